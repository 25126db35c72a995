"""Local tools: a Python function plus the JSON schema a model sees for it.

`Tool.from_function` reads the schema from the function's signature (type hints, defaults) and
its Google-style docstring (summary -> description, ``Args:`` -> per-parameter descriptions),
using only public pydantic APIs (`create_model`, `Field`). `Tool.call` validates the model's
arguments against the same pydantic model before the function runs, so a model that invents an
argument or sends a string where an int belongs gets a `ToolError` naming the field, not a
`TypeError` from deep inside the tool.

Sync tools run in a worker thread (`asyncio.to_thread`): a slow sync tool must not stall the
event loop that serves every other agent key. A sync tool declared ``blocking=False`` runs on
the loop itself: the thread hand-off costs about 0.2 ms of CPU per call (measured here), far
more than a lookup or a little arithmetic. A sync tool declared ``inline=True`` does not go to
an executor at all: the engine runs it inside the turn (`Tool.call_inline`) and journals its
result like any other call's, which saves the round trip to a worker (in the Flink runtime a
trip through the bridge, a Ray worker and back, and a wake-up of the turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import re
from collections.abc import Callable, Iterator
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from actors.models.base import ToolSchema
from protocols.errors import ToolError, UserError

__all__ = ["Tool", "parse_google_docstring"]

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Returns|Return|Yields|"
    r"Raises|Examples?|Notes?|Attributes|See Also|Warnings?|Todo):\s*$"
)
_ARG_SECTIONS = {"Args", "Arguments", "Parameters", "Params", "Keyword Args", "Keyword Arguments"}
_ARG_LINE = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(\([^)]*\))?\s*:\s*(?P<desc>.*)$")


def parse_google_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and its per-argument descriptions.

    The description is everything before the first section header (``Args:``, ``Returns:``,
    ...). Argument lines look like ``name: text`` or ``name (type): text``; more-indented lines
    continue the previous argument.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for raw in lines:
        stripped = raw.strip()
        header = _SECTION.match(stripped) if raw == raw.lstrip() else None
        if header:
            section, current, arg_indent = header.group(1), None, None
            continue
        if section is None:
            description.append(raw)
            continue
        if section not in _ARG_SECTIONS or not stripped:
            continue
        indent = len(raw) - len(raw.lstrip())
        match = _ARG_LINE.match(stripped)
        if match and (arg_indent is None or indent <= arg_indent):
            arg_indent = indent
            current = match.group("name")
            args[current] = match.group("desc").strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return "\n".join(description).strip(), args


def _unwrap(fn: Any) -> Callable[..., Any]:
    if isinstance(fn, staticmethod | classmethod):
        fn = fn.__func__
    if not callable(fn):
        raise UserError(
            f"a tool must be a function or method, not {type(fn).__name__!r}; "
            "pass the function itself (e.g. Tool.from_function(my_tool))"
        )
    return fn


def _is_async(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


def _build_args_model(
    fn: Callable[..., Any], name: str, arg_docs: dict[str, str]
) -> type[BaseModel]:
    """A pydantic model whose fields are the function's parameters (extra arguments forbidden)."""
    signature = inspect.signature(fn)
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolvable forward reference: say which tool, keep the cause
        raise UserError(
            f"cannot resolve the type hints of tool {name!r}: {exc}; "
            "import the annotated types at module level"
        ) from exc
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UserError(
                f"tool {name!r} takes *{param.name}; a tool's parameters must be named "
                "so the model can fill them: list them explicitly"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise UserError(
                f"tool {name!r} has positional-only parameter {param.name!r}; "
                "remove the '/' so arguments can be passed by name"
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        description = arg_docs.get(param.name)
        fields[param.name] = (annotation, Field(default, description=description))
    model_name = "".join(part.capitalize() for part in re.split(r"\W+|_", name) if part) or "Tool"
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{model_name}Args", __config__=ConfigDict(extra="forbid"), **fields
    )


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's generated titles: models read descriptions, titles only cost tokens."""
    schema = dict(schema)
    schema.pop("title", None)
    props = schema.get("properties")
    if isinstance(props, dict):
        schema["properties"] = {
            key: {k: v for k, v in value.items() if k != "title"}
            if isinstance(value, dict)
            else value
            for key, value in props.items()
        }
    schema.setdefault("properties", {})
    return schema


def _tool_from_function(
    fn: Callable[..., Any], name: str | None, blocking: bool = True, inline: bool = False
) -> Tool:
    """Pickle helper: rebuild a tool from its function (the generated model is not picklable)."""
    return Tool.from_function(fn, name=name, blocking=blocking, inline=inline)


class Tool:
    """A callable tool: its `name`, `description`, argument `schema`, and the function.

    Build one with `Tool.from_function`. A `Tool` pickles as its function and name, so it can
    travel to a Ray worker when the function itself is importable (or cloudpickle-able).
    """

    __slots__ = (
        "_args_model",
        "_explicit_name",
        "blocking",
        "description",
        "fn",
        "inline",
        "is_async",
        "name",
        "schema",
    )

    def __init__(
        self,
        *,
        fn: Callable[..., Any],
        schema: ToolSchema,
        args_model: type[BaseModel],
        explicit_name: str | None = None,
        blocking: bool = True,
        inline: bool = False,
    ) -> None:
        self.fn = fn
        self.schema = schema
        self.name = schema.name
        self.description = schema.description
        self.is_async = _is_async(fn)
        self.blocking = blocking
        self.inline = inline
        if inline and self.is_async:
            raise UserError(
                f"tool {self.name!r} is async and inline=True: an inline tool runs inside the "
                "turn, synchronously; make it a plain function, or drop inline=True"
            )
        self._args_model = args_model
        self._explicit_name = explicit_name

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any] | staticmethod[Any, Any],
        *,
        name: str | None = None,
        blocking: bool = True,
        inline: bool = False,
    ) -> Tool:
        """Make a tool from a plain function, a `staticmethod` object or a bound method.

        Args:
            fn: The function; sync or async. Its parameters become the tool's arguments.
            name: The tool name the model sees; defaults to the function's ``__name__``.
            blocking: False for a sync function that never blocks: it runs on the event loop
                instead of in a thread (ignored for async functions).
            inline: True for a sync function that never blocks and is cheap: the engine runs
                it inside the turn instead of sending it to an executor (`call_inline`).

        Raises:
            UserError: The function takes ``*args``/``**kwargs`` or positional-only
                parameters, its hints cannot be resolved, or it is async and ``inline``.
        """
        func = _unwrap(fn)
        tool_name = name or getattr(func, "__name__", None)
        if not tool_name or not isinstance(tool_name, str):
            raise UserError(
                f"cannot name the tool for {func!r}; pass name=... to Tool.from_function"
            )
        description, arg_docs = parse_google_docstring(inspect.getdoc(func))
        args_model = _build_args_model(func, tool_name, arg_docs)
        parameters = _clean_schema(args_model.model_json_schema())
        schema = ToolSchema(name=tool_name, description=description, parameters=parameters)
        return cls(
            fn=func,
            schema=schema,
            args_model=args_model,
            explicit_name=name,
            blocking=blocking,
            inline=inline,
        )

    def validate_arguments(self, arguments: dict[str, Any] | str | None) -> dict[str, Any]:
        """Validate the model's arguments (a dict or its JSON text); return keyword arguments.

        Raises:
            ToolError: The JSON is malformed, not an object, or fails validation.
        """
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str | bytes):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise ToolError(
                    f"tool {self.name!r} got arguments that are not valid JSON ({exc.msg} at "
                    f"position {exc.pos}); send a JSON object matching the tool's schema"
                ) from exc
        if not isinstance(arguments, dict):
            raise ToolError(
                f"tool {self.name!r} got arguments of type {type(arguments).__name__!r}; "
                "send a JSON object whose keys are the parameter names"
            )
        try:
            validated = self._args_model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise ToolError(
                f"invalid arguments for tool {self.name!r}: {problems}; "
                "send arguments that match the tool's JSON schema"
            ) from exc
        return {field: getattr(validated, field) for field in type(validated).model_fields}

    async def call(self, arguments: dict[str, Any] | str | None = None) -> Any:
        """Validate `arguments`, run the tool, return what it returned.

        Raises:
            ToolError: Invalid arguments, or the tool raised (the original is the cause).
        """
        kwargs = self.validate_arguments(arguments)
        with self._raised_as_tool_error():
            if self.is_async:
                return await self.fn(**kwargs)
            if self.blocking:
                result = await asyncio.to_thread(self.fn, **kwargs)
            else:
                result = self.fn(**kwargs)
            if inspect.isawaitable(result):  # a sync wrapper returning a coroutine
                return await result
            return result

    def call_inline(self, arguments: dict[str, Any] | str | None = None) -> Any:
        """Validate `arguments` and run a sync tool here, now; what `call` does without an
        event loop (the engine's path for ``inline`` tools).

        Raises:
            ToolError: Invalid arguments, the tool raised, or it returned an awaitable.
        """
        kwargs = self.validate_arguments(arguments)
        with self._raised_as_tool_error():
            result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise ToolError(
                f"inline tool {self.name!r} returned an awaitable; an inline tool must return "
                "its result (drop inline=True to run it on a worker)"
            )
        return result

    @contextlib.contextmanager
    def _raised_as_tool_error(self) -> Iterator[None]:
        """What the tool raises becomes a `ToolError` naming the tool (the original is the
        cause); a `ToolError` passes as it is."""
        try:
            yield
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(f"tool {self.name!r} raised {type(exc).__name__}: {exc}") from exc

    def __reduce__(self) -> tuple[Any, ...]:
        return (_tool_from_function, (self.fn, self._explicit_name, self.blocking, self.inline))

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r})"
