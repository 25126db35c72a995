"""The message registry: which pydantic class a (type name, version) on the wire means.

Users register their message models with `@message("shop.Order", version=1)`. The registry
resolves the wire's (name, version) to a class when a payload is validated, runs upcasters
(v1 -> v2 -> ...) for old versions, and refuses an incompatible schema at registration when
it has been pinned to a recorded snapshot (see `protocols.schema_check`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from protocols.compat import compare_descriptors, describe_message
from protocols.errors import UserError

__all__ = [
    "MessageRegistry",
    "MessageType",
    "Upcaster",
    "default_registry",
    "message",
    "upcaster",
]

M = TypeVar("M", bound=type[BaseModel])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,199}")
SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class MessageType:
    """One registered message: its wire name and version, its class and its old names."""

    name: str
    version: int
    cls: type[BaseModel]
    aliases: tuple[str, ...] = ()


@dataclass(slots=True)
class _Resolved:
    """How to turn a wire payload of one (name, version) into an object (cached per pair)."""

    cls: type[BaseModel]
    upcasters: tuple[Upcaster, ...] = field(default_factory=tuple)
    validate_python: Callable[[Any], BaseModel] | None = None
    """`cls.__pydantic_validator__.validate_python`, kept by the decoder once `cls` is complete
    (reading a class attribute of a pydantic model goes through its metaclass hook)."""


class MessageRegistry:
    """Maps (type name, version) to pydantic classes, and classes back to their wire identity."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._by_key: dict[tuple[str, int], MessageType] = {}
        self._by_cls: dict[type[BaseModel], MessageType] = {}
        self._aliases: dict[str, str] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._resolved: dict[tuple[str, int], _Resolved | None] = {}
        self._pinned: dict[str, dict[str, Any]] = {}

    # registration -----------------------------------------------------------------------

    def register(
        self,
        cls: type[BaseModel],
        name: str,
        version: int = 1,
        *,
        aliases: Iterable[str] = (),
    ) -> MessageType:
        """Register `cls` as message `name` at `version`; raise `UserError` on any conflict."""
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise UserError(
                f"@message can only register pydantic models, got {cls!r}; "
                "make it a subclass of pydantic.BaseModel"
            )
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise UserError(
                f"message name {name!r} for {cls.__qualname__!r} is invalid; use letters, digits, "
                "'_', '.', ':' or '-', starting with a letter, e.g. 'shop.OrderPlaced'"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise UserError(f"message {name!r}: version must be an int >= 1, got {version!r}")
        alias_tuple = tuple(aliases)
        with self._lock:
            current = self._by_key.get((name, version))
            if current is not None:
                if current.cls is cls:
                    return current
                problems = compare_descriptors(describe_message(current.cls), describe_message(cls))
                detail = f"; besides, the schemas differ: {'; '.join(problems)}" if problems else ""
                raise UserError(
                    f"message {name!r} version {version} is already registered by "
                    f"{current.cls.__qualname__!r}, cannot register {cls.__qualname__!r}{detail}; "
                    "use another name or version"
                )
            previous = self._by_cls.get(cls)
            if previous is not None:
                raise UserError(
                    f"{cls.__qualname__!r} is already registered as message {previous.name!r} "
                    f"version {previous.version}; a class has one wire identity, subclass it "
                    "to register it again"
                )
            if name in self._aliases:
                raise UserError(
                    f"message name {name!r} is already an alias of {self._aliases[name]!r}"
                )
            for alias in alias_tuple:
                if not isinstance(alias, str) or not _NAME_RE.fullmatch(alias):
                    raise UserError(f"message {name!r}: alias {alias!r} is not a valid name")
                owner = self._aliases.get(alias)
                if owner is not None and owner != name:
                    raise UserError(
                        f"alias {alias!r} of message {name!r} already points to {owner!r}"
                    )
                if any(key[0] == alias for key in self._by_key):
                    raise UserError(
                        f"alias {alias!r} of message {name!r} is itself a registered message"
                    )
            pinned = self._pinned.get(name, {}).get(str(version))
            if pinned is not None:
                problems = compare_descriptors(pinned, describe_message(cls))
                if problems:
                    raise UserError(
                        f"message {name!r} version {version} ({cls.__qualname__!r}) is "
                        f"incompatible with its recorded schema: {'; '.join(problems)}. Revert "
                        f"the change, or register it as version {version + 1} with an upcaster "
                        f"from version {version}"
                    )
            entry = MessageType(name=name, version=version, cls=cls, aliases=alias_tuple)
            self._by_key[(name, version)] = entry
            self._by_cls[cls] = entry
            for alias in alias_tuple:
                self._aliases[alias] = name
            self._resolved.clear()
            return entry

    def add_upcaster(self, name: str, from_version: int, fn: Upcaster) -> None:
        """Register `fn`, which turns a version-`from_version` payload dict into the next one."""
        with self._lock:
            key = (name, from_version)
            if key in self._upcasters and self._upcasters[key] is not fn:
                raise UserError(
                    f"message {name!r} already has an upcaster from version {from_version}"
                )
            self._upcasters[key] = fn
            self._resolved.clear()

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of `add_upcaster`; returns the function unchanged."""

        def decorate(fn: Upcaster) -> Upcaster:
            self.add_upcaster(name, from_version, fn)
            return fn

        return decorate

    def pin(self, snapshot: dict[str, Any]) -> None:
        """Refuse, from now on, to register a schema incompatible with `snapshot`'s record.

        Entries already registered are checked too, so the order of pin and import is free.
        """
        messages = snapshot.get("messages", {})
        problems = self.compare(snapshot, require_all=False)
        with self._lock:
            self._pinned = {name: dict(versions) for name, versions in messages.items()}
        incompatible = [p for p in problems if not p.startswith("new:")]
        if incompatible:
            raise UserError(
                "registered messages break the pinned schemas: " + "; ".join(incompatible)
            )

    # lookups --------------------------------------------------------------------------

    def canonical_name(self, name: str) -> str:
        """The current name of a type, following aliases (old names)."""
        return self._aliases.get(name, name)

    def find(self, name: str, version: int) -> type[BaseModel] | None:
        """The class registered for exactly (name, version), or None."""
        entry = self._by_key.get((self.canonical_name(name), version))
        return entry.cls if entry else None

    def get(self, name: str, version: int) -> type[BaseModel]:
        """The class registered for exactly (name, version); raise `UserError` if none."""
        cls = self.find(name, version)
        if cls is None:
            known = self.versions(self.canonical_name(name))
            raise UserError(
                f"no message {name!r} version {version} is registered (known versions: "
                f"{known or 'none'}); register it with @message({name!r}, version={version})"
            )
        return cls

    def type_of(self, cls: type[BaseModel]) -> MessageType:
        """The wire identity of a registered class; raise `UserError` if unregistered."""
        entry = self._by_cls.get(cls)
        if entry is None:
            raise UserError(
                f"{cls.__qualname__!r} is not a registered message; decorate it with "
                f"@message('<name>') (from protocols) before sending it"
            )
        return entry

    def lookup(self, cls: type[BaseModel]) -> MessageType | None:
        """The wire identity of a class, or None."""
        return self._by_cls.get(cls)

    def versions(self, name: str) -> list[int]:
        """The registered versions of `name`, ascending."""
        return sorted(v for (n, v) in self._by_key if n == name)

    def __iter__(self) -> Iterator[MessageType]:
        return iter(sorted(self._by_key.values(), key=lambda e: (e.name, e.version)))

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, item: object) -> bool:
        return item in self._by_cls or item in self._by_key

    # decoding -------------------------------------------------------------------------

    def resolve(self, name: str, version: int) -> _Resolved | None:
        """How to read (name, version): the class plus the upcasters to run first, or None.

        An old version is upcast to the newest version reachable through a complete upcaster
        chain; without one, its own registered class reads it. Unknown names and versions
        newer than any registered one resolve to None.
        """
        key = (name, version)
        try:
            return self._resolved[key]
        except KeyError:
            pass
        canonical = self.canonical_name(name)
        result: _Resolved | None = None
        chain: list[Upcaster] = []
        best: type[BaseModel] | None = None
        current = version
        exact = self._by_key.get((canonical, version))
        if exact is not None:
            best = exact.cls
        while (canonical, current) in self._upcasters:
            chain.append(self._upcasters[(canonical, current)])
            current += 1
            entry = self._by_key.get((canonical, current))
            if entry is not None:
                best = entry.cls
                result = _Resolved(cls=best, upcasters=tuple(chain))
        if result is None and exact is not None:
            result = _Resolved(cls=exact.cls)
        self._resolved[key] = result
        return result

    def validate(self, name: str, version: int, data: Any) -> BaseModel:
        """Validate a decoded payload; raise `UserError` (unknown type) or `ValidationError`.

        Fields unknown to the reader's class are dropped (forward compatibility), even when
        the class forbids extra fields.
        """
        resolved = self.resolve(name, version)
        if resolved is None:
            known = self.versions(self.canonical_name(name))
            raise UserError(
                f"no message {name!r} version {version} is registered (known versions: "
                f"{known or 'none'})"
            )
        for up in resolved.upcasters:
            data = up(data)
        validator = resolved.cls.__pydantic_validator__
        try:
            return validator.validate_python(data)  # type: ignore[no-any-return]
        except ValidationError as exc:
            extras = [e["loc"] for e in exc.errors() if e["type"] == "extra_forbidden"]
            if not extras or len(extras) != exc.error_count():
                raise
            return validator.validate_python(_drop_paths(data, extras))  # type: ignore[no-any-return]

    # snapshots ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able record of every registered schema (what `schema_check` commits)."""
        messages: dict[str, dict[str, Any]] = {}
        for entry in self:
            record = describe_message(entry.cls)
            if entry.aliases:
                record["aliases"] = list(entry.aliases)
            messages.setdefault(entry.name, {})[str(entry.version)] = record
        return {"format": SNAPSHOT_FORMAT, "messages": messages}

    def compare(self, snapshot: dict[str, Any], *, require_all: bool = True) -> list[str]:
        """Differences with a recorded snapshot; lines starting 'new:' are compatible additions.

        With `require_all`, a recorded (name, version) that is no longer registered is a
        problem too (old messages of it could not be read).
        """
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            return [
                f"snapshot format {snapshot.get('format')!r} unknown; expected {SNAPSHOT_FORMAT}"
            ]
        problems: list[str] = []
        recorded: dict[str, dict[str, Any]] = snapshot.get("messages", {})
        current = self.snapshot()["messages"]
        for name, versions in sorted(recorded.items()):
            for version, old in sorted(versions.items(), key=lambda kv: int(kv[0])):
                new = current.get(name, {}).get(version)
                if new is None:
                    if not require_all:
                        continue
                    problems.append(
                        f"message {name!r} version {version} is recorded but no longer "
                        "registered; old messages of it could not be read"
                    )
                    continue
                for problem in compare_descriptors(old, new):
                    problems.append(f"message {name!r} version {version}: {problem}")
        for name, versions in sorted(current.items()):
            for version in sorted(versions, key=int):
                if version not in recorded.get(name, {}):
                    problems.append(f"new: message {name!r} version {version} is not recorded yet")
        return problems


def _drop_paths(data: Any, paths: list[tuple[int | str, ...]]) -> Any:
    """Copy `data` without the keys at `paths` (pydantic error locations of extra fields)."""
    if not paths:
        return data
    if isinstance(data, dict):
        here = {p[0] for p in paths if len(p) == 1}
        deeper: dict[Any, list[tuple[int | str, ...]]] = {}
        for p in paths:
            if len(p) > 1:
                deeper.setdefault(p[0], []).append(p[1:])
        return {k: _drop_paths(v, deeper.get(k, [])) for k, v in data.items() if k not in here}
    if isinstance(data, list):
        deeper_l: dict[Any, list[tuple[int | str, ...]]] = {}
        for p in paths:
            if len(p) > 1:
                deeper_l.setdefault(p[0], []).append(p[1:])
        return [_drop_paths(v, deeper_l.get(i, [])) for i, v in enumerate(data)]
    return data


default_registry = MessageRegistry()
"""The process-wide registry: `@message` registers here unless told otherwise."""


def message(
    name: str,
    version: int = 1,
    *,
    aliases: Iterable[str] = (),
    registry: MessageRegistry | None = None,
) -> Callable[[M], M]:
    """Class decorator: register a pydantic model as message `name` at `version`.

    `aliases` are former names of the type, still accepted on the wire. Returns the class
    unchanged.
    """
    if not isinstance(name, str):
        raise UserError(
            f"@message needs a type name, e.g. @message('shop.OrderPlaced'), got {name!r}"
        )
    target = default_registry if registry is None else registry

    def decorate(cls: M) -> M:
        target.register(cls, name, version, aliases=aliases)
        return cls

    return decorate


def upcaster(
    name: str, from_version: int, *, registry: MessageRegistry | None = None
) -> Callable[[Upcaster], Upcaster]:
    """Decorator: `fn(dict) -> dict` migrates payloads of `name` from `from_version` to the next."""
    target = default_registry if registry is None else registry
    return target.upcaster(name, from_version)
