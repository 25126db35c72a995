"""`AgentEngine`: deterministic replay of one turn against a journal of call results.

A turn processes one incoming event (an input, a message from another agent, a timer). The
engine runs it as a pure function of (state, event, journal): it never performs a call itself.
Each model, tool, MCP or context call is an `EffectRequest` with a deterministic ``call_id``;
if the journal holds its `EffectResult` the engine uses it, otherwise the request is returned in
``TurnOutcome.pending``. The runtime (local runner, Flink operator + Ray pool) executes the
pending requests, journals the results and runs the turn again, until ``done``. Recorded
results are replayed, never requested again.

Event ids are paths, never a global counter. The incoming event's id is the turn id; a child
event's id is ``<parent id>/<emitter>.<index>`` where the emitter is a step name (or ``chat``,
``tool``, ``error`` for built-ins) and the index counts that emitter's emissions for that
parent. A call's id derives from the id of what requested it:

==========================  =================================================================
built-in model loop         ``<event id>/model.<i>`` (i-th model call of a ChatModelEvent),
                            ``<event id>/tool.<i>.<j>`` (j-th tool call of the i-th answer)
ToolCallEvent               ``<event id>/tool``
ctx.call / call_tool / ...  ``<event id>/<step>#<n>`` (n-th call made by that step invocation);
                            ``ctx.chat`` nests the model loop under that id
MCP tool listing / prompt   ``<turn id>/mcp.<server>.tools``, ``<turn id>/mcp.<server>.prompt``
==========================  =================================================================

so ids are the same whatever order results arrive in.

Suspension. A step whose call is not journaled yet stops at that call and commits nothing; from
then on, no later step of the turn runs in this pass, because it could observe state the
unfinished step has not written yet. A built-in handler (model loop, tool call) that waits for a
result would enqueue its answer event at that point of the final pass, so steps no longer run
for events enqueued after it (they would run before the answer's steps, on different state);
steps for events already queued still run. Built-in handling does not read state, so it keeps
going and requests everything it can in parallel. Every step a partial pass runs therefore
sees exactly what it sees in the final pass, which runs strictly in FIFO order like a
sequential run: the requests of a partial pass are those of the final one.
"""

from __future__ import annotations

import copy
import json
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from actors.context import RunnerContext, Suspend
from actors.effects import EffectKind, EffectRequest, EffectResult
from actors.executor import execute_inline
from actors.messaging import OpenAsk, Outbound
from actors.models.base import ChatResult, ToolSchema
from actors.state import dump_state, load_state
from actors.workflow import CompiledWorkflow, ModelSpec, Workflow
from protocols.errors import AgentRunError, ToolError, UserError
from protocols.events import (
    ChatMessage,
    ChatModelEvent,
    ChatModelResponseEvent,
    ErrorEvent,
    Event,
    OutputEvent,
    ToolCallEvent,
    ToolResultEvent,
    Usage,
)

__all__ = ["AgentEngine", "TurnOutcome"]

MAX_EVENTS_PER_TURN = 10_000
MAX_PASSES_PER_TURN = 1_000


_NO_USAGE = Usage()  # frozen: one instance serves every turn that used nothing


@dataclass
class TurnOutcome:
    """What one pass over a turn produced.

    ``done``: nothing is pending; ``state``, ``outputs``, ``sends``, ``timers``, ``errors`` and
    ``usage`` are final and may be committed. Otherwise ``pending`` lists the calls to execute
    and journal before running the turn again; the other fields are partial and must be dropped.
    """

    done: bool
    pending: list[EffectRequest] = field(default_factory=list)
    state: Any = None
    outputs: list[Any] = field(default_factory=list)
    sends: list[Outbound] = field(default_factory=list)
    timers: list[tuple[float, Event]] = field(default_factory=list)
    errors: list[ErrorEvent] = field(default_factory=list)
    usage: Usage = _NO_USAGE
    executed: dict[str, EffectResult] = field(default_factory=dict)
    """Results of the ``inline`` tools this pass ran itself (`actors.tools.Tool.call_inline`):
    the caller journals them with the results of ``pending``, so later passes replay them."""
    # -- messaging (actors.messaging) ------------------------------------------------------
    # ``sends`` holds every ctx.send/ask/reply/publish as an `Outbound`; ``asks`` the asks this
    # turn opened (correlation id, recipient, timeout): the runtime keeps them, with a deadline
    # on its own clock, and delivers AskReply or AskTimeout, whichever comes first.
    asks: list[OpenAsk] = field(default_factory=list)


class AgentEngine:
    """Compiles a workflow once and runs its turns; picklable (cloudpickle) with its workflow."""

    def __init__(self, workflow: Workflow) -> None:
        if not isinstance(workflow, Workflow):
            raise UserError(
                f"AgentEngine takes a Workflow instance, got {type(workflow).__name__!r}; "
                "write AgentEngine(MyWorkflow())"
            )
        self.workflow = workflow
        self.compiled: CompiledWorkflow = workflow.compiled()

    @property
    def name(self) -> str:
        return self.compiled.name

    def new_state(self) -> BaseModel:
        """A fresh state for a key seen for the first time."""
        return self.compiled.state_type()

    def dump_state(self, state: BaseModel) -> bytes:
        """Encode a state as msgpack bytes."""
        return dump_state(state)

    def load_state(self, data: bytes) -> BaseModel:
        """Decode state bytes; fields added to the state model since take their defaults."""
        return load_state(self.compiled.state_type, data)

    def executor(self) -> Any:
        """An in-process `EffectExecutor` for this workflow's models, tools and MCP servers."""
        from actors.executor import WorkflowExecutor

        return WorkflowExecutor(self.compiled)

    def run_turn(
        self,
        state: BaseModel,
        event: Event,
        journal: Mapping[str, EffectResult | Mapping[str, Any]],
        *,
        address: Any,
        turn_id: str,
        sender: Any = None,
        owned: bool = False,
        correlation_id: str | None = None,
    ) -> TurnOutcome:
        """Run one pass of the turn that handles ``event``. Pure: ``state`` is not mutated, and
        the same inputs give the same outcome.

        ``owned=True`` hands ``state`` over to the engine (e.g. freshly decoded from bytes for
        this pass and not used again): it skips the defensive deep copy, which is the largest
        cost of a small turn.

        ``correlation_id`` is the correlation id of the ask being handled (None for anything
        else): ``ctx.reply`` carries it back, so the asker receives an `AskReply`.
        """
        turn = _Turn(self.compiled, journal, address=address, sender=sender, turn_id=turn_id)
        turn.correlation_id = correlation_id  # messaging: read by RunnerContext.reply
        return turn.run(state if owned else copy.deepcopy(state), event)

    async def complete_turn(
        self,
        state_of: Callable[[], BaseModel],
        event: Event,
        journal: dict[str, Any],
        execute: Callable[[list[EffectRequest]], Awaitable[list[Any]]],
        *,
        address: Any,
        turn_id: str,
        sender: Any = None,
        correlation_id: str | None = None,
    ) -> TurnOutcome:
        """Run a turn to the end in process: each pass's pending calls go to ``execute``, their
        results (as `execute` returns them: `EffectResult`s or their JSON-mode dicts) into
        ``journal``, until a pass is done. ``state_of`` gives each pass a state of its own
        (it is handed over, as with ``owned=True``).

        The loop of the local runner and the simulation; the Flink operator runs the same
        passes from its callbacks instead, with the journal in keyed state.
        """
        for _ in range(MAX_PASSES_PER_TURN):
            outcome = self.run_turn(
                state_of(),
                event,
                journal,
                address=address,
                turn_id=turn_id,
                sender=sender,
                owned=True,
                correlation_id=correlation_id,
            )
            if outcome.done:
                return outcome
            journal.update(outcome.executed)  # inline tools: not run again by the next pass
            results = await execute(outcome.pending)
            for request, result in zip(outcome.pending, results, strict=True):
                if request.call_id in journal:
                    raise AgentRunError(f"call {request.call_id!r} was requested twice")
                journal[request.call_id] = result
        raise AgentRunError(
            f"turn {turn_id!r} of {str(address)!r} still had pending calls after "
            f"{MAX_PASSES_PER_TURN} passes"
        )


class _Turn:
    """One pass over one turn: the event queue, the journal lookups and the pending set."""

    def __init__(
        self,
        compiled: CompiledWorkflow,
        journal: Mapping[str, Any],
        *,
        address: Any,
        sender: Any,
        turn_id: str,
    ) -> None:
        self.compiled = compiled
        self.journal = journal
        self.address = address
        self.sender = sender
        self.turn_id = turn_id
        self.pending: dict[str, EffectRequest] = {}
        self.correlation_id: str | None = None  # messaging: the ask being handled, if any
        self.used: set[str] = set()
        self.usage = _NO_USAGE
        self.executed: dict[str, EffectResult] = {}  # inline tools run by this pass

    # -- the event loop -----------------------------------------------------------------------

    def run(self, state: BaseModel, root: Event) -> TurnOutcome:
        out = TurnOutcome(done=False, state=state)
        queue: deque[tuple[Event, str, int]] = deque([(root, self.turn_id, 0)])
        seq = 1  # order of enqueueing; the final pass enqueues in the same order
        barrier = False  # a step suspended: no later step may run in this pass
        # A built-in handler waiting for a result would enqueue its answer at this point of the
        # final pass: no step may run for events enqueued after it, they would run too early.
        cutoff = MAX_EVENTS_PER_TURN * 10
        processed = 0

        def enqueue(child: Event, child_id: str) -> None:
            nonlocal seq
            queue.append((child, child_id, seq))
            seq += 1

        while queue:
            event, eid, event_seq = queue.popleft()
            processed += 1
            if processed > MAX_EVENTS_PER_TURN:
                out.errors.append(
                    ErrorEvent(
                        error_type="TurnLimitExceeded",
                        message=f"turn {self.turn_id!r} processed more than "
                        f"{MAX_EVENTS_PER_TURN} events; a step probably re-emits the event "
                        "type it handles",
                        source_event=type(event).__name__,
                    )
                )
                break
            handled = False
            if isinstance(event, OutputEvent):
                out.outputs.append(event.output)
                handled = True
            builtin: list[Event] | None = []
            if isinstance(event, ChatModelEvent):
                handled = True
                builtin = self._handle_chat(event, eid)
            elif isinstance(event, ToolCallEvent):
                handled = True
                builtin = self._handle_tool_call(event, eid)
            if builtin is None:  # waiting for a result
                cutoff = min(cutoff, seq)
            label = "chat" if isinstance(event, ChatModelEvent) else "tool"
            for k, child in enumerate(builtin or []):
                enqueue(child, f"{eid}/{label}.{k}")
            for spec in self.compiled.steps:
                if not spec.accepts(event):
                    continue
                handled = True
                if barrier or event_seq >= cutoff:
                    continue
                ctx = RunnerContext(self, f"{eid}/{spec.name}", event)
                try:
                    if spec.takes_self:
                        returned = spec.fn(self.compiled.instance, event, state, ctx)
                    else:
                        returned = spec.fn(event, state, ctx)
                    if isinstance(returned, Event):
                        ctx.events.append(returned)  # `return SomeEvent(...)` emits it
                    elif returned is not None:
                        raise UserError(
                            f"step {spec.name!r} returned {type(returned).__name__!r}; a step "
                            "returns None or an Event; emit outputs with "
                            "ctx.send_event(OutputEvent(value))"
                        )
                except Suspend:
                    barrier = True
                    continue
                except Exception as exc:
                    error = _step_error(exc, event, spec.name)
                    if isinstance(event, ErrorEvent):
                        out.errors.append(error)  # an error handler failed: do not loop
                    else:
                        enqueue(error, f"{eid}/{spec.name}.error")
                    continue
                emitted: list[Event] = [*ctx.errors, *ctx.events]
                for k, child in enumerate(emitted):
                    enqueue(child, f"{eid}/{spec.name}.{k}")
                out.sends.extend(ctx.sends)
                out.asks.extend(ctx.asks)  # messaging: asks opened by this step
                out.timers.extend(ctx.timers)
            if not handled:
                if isinstance(event, ErrorEvent):
                    out.errors.append(event)
                else:
                    unhandled = ErrorEvent(
                        error_type="UnhandledEvent",
                        message=f"no step of {self.compiled.name!r} handles "
                        f"{type(event).__name__!r}; add @step({type(event).__name__}) or "
                        "stop sending it",
                        source_event=type(event).__name__,
                    )
                    enqueue(unhandled, f"{eid}/unhandled")
        out.pending = list(self.pending.values())
        out.done = not out.pending
        out.usage = self.usage
        out.executed = self.executed
        return out

    # -- journal ------------------------------------------------------------------------------

    def _lookup(self, call_id: str) -> EffectResult | None:
        result = self.journal.get(call_id)
        if result is None or isinstance(result, EffectResult):
            return result
        return EffectResult.model_validate(result)

    def await_all(self, requests: list[EffectRequest]) -> list[EffectResult]:
        """Results of all ``requests``; records the missing ones and suspends if any is."""
        results: list[EffectResult] = []
        for request in requests:
            result = self._lookup(request.call_id)
            if result is None and request.kind is EffectKind.TOOL:
                result = self._run_inline(request.call_id, request.target, request.payload)
            if result is None:
                self.pending.setdefault(request.call_id, request)
            else:
                results.append(result)
        if len(results) < len(requests):
            raise Suspend()
        for result in results:
            self._count_usage(result)
        return results

    def await_one(
        self,
        call_id: str,
        kind: EffectKind,
        target: str,
        payload: dict[str, Any] | Callable[[], dict[str, Any]],
        *,
        rate_key: str | None,
    ) -> EffectResult:
        """The result of one call; records it and suspends if it is not journaled yet.

        ``payload`` may be a function that builds it: a replayed call (every pass after the
        one that made it) then never builds its request, which for a model call means dumping
        the whole conversation.
        """
        result = self._lookup(call_id)
        if result is None and kind is EffectKind.TOOL:
            result = self._run_inline(call_id, target, payload)
        if result is None:
            if callable(payload):
                payload = payload()
            self.pending.setdefault(
                call_id,
                EffectRequest(
                    call_id=call_id, kind=kind, target=target, payload=payload, rate_key=rate_key
                ),
            )
            raise Suspend()
        self._count_usage(result)
        return result

    def _run_inline(
        self,
        call_id: str,
        target: str,
        payload: dict[str, Any] | Callable[[], dict[str, Any]],
    ) -> EffectResult | None:
        """Run the call now if `target` is an ``inline`` tool (None if it is not one)."""
        tool = self.compiled.tools.get(target)
        if tool is None or not tool.inline:
            return None
        if callable(payload):
            payload = payload()
        result = execute_inline(tool, call_id, dict(payload.get("arguments") or {}))
        self.executed[call_id] = result
        return result

    def _count_usage(self, result: EffectResult) -> None:
        if result.call_id not in self.used:
            self.used.add(result.call_id)
            if result.usage is not None:
                self.usage = self.usage + result.usage

    # -- tools and MCP ------------------------------------------------------------------------

    def mcp_tools(self, servers: tuple[str, ...] | list[str]) -> dict[str, list[ToolSchema]]:
        """The tools each server offers (a journaled listing, once per turn and server).
        Raises `ToolError` when a listing failed."""
        requests = [
            EffectRequest(
                call_id=f"{self.turn_id}/mcp.{server}.tools",
                kind=EffectKind.MCP,
                target=server,
                payload={"op": "list_tools"},
            )
            for server in servers
        ]
        listings: dict[str, list[ToolSchema]] = {}
        for server, result in zip(servers, self.await_all(requests), strict=True):
            if result.error is not None:
                raise ToolError(
                    f"listing the tools of MCP server {server!r} failed: "
                    f"{result.error.error_type}: {result.error.message}"
                )
            listings[server] = [ToolSchema.model_validate(t) for t in result.value or []]
        return listings

    def resolve_tool(self, tool_name: str) -> tuple[EffectKind, str]:
        """Map a tool name to its effect: a local tool, ``server/tool``, or an MCP tool."""
        if tool_name in self.compiled.tools:
            return EffectKind.TOOL, tool_name
        server, sep, _ = tool_name.partition("/")
        if sep and server in self.compiled.mcp_servers:
            return EffectKind.MCP, tool_name
        servers = list(self.compiled.mcp_servers)
        for server, schemas in self.mcp_tools(servers).items():
            if any(s.name == tool_name for s in schemas):
                return EffectKind.MCP, f"{server}/{tool_name}"
        raise ToolError(
            f"unknown tool {tool_name!r}: not a @tool of {self.compiled.name!r} "
            f"({sorted(self.compiled.tools)!r}) nor offered by its MCP servers {servers!r}"
        )

    def _handle_tool_call(self, event: ToolCallEvent, eid: str) -> list[Event] | None:
        call_id = event.call_id or eid
        try:
            kind, target = self.resolve_tool(event.tool_name)
        except Suspend:
            return None
        except ToolError as exc:
            return _tool_failure(event.tool_name, call_id, "ToolError", str(exc), False)
        try:
            result = self.await_one(
                f"{eid}/tool", kind, target, {"arguments": dict(event.arguments)}, rate_key=None
            )
        except Suspend:
            return None
        if result.error is not None:
            err = result.error
            return _tool_failure(
                event.tool_name,
                call_id,
                err.error_type,
                err.message,
                err.retryable,
                cause=f"{kind.value} {target!r} call {result.call_id!r}",
            )
        return [ToolResultEvent(tool_name=event.tool_name, result=result.value, call_id=call_id)]

    # -- the model loop -----------------------------------------------------------------------

    def _handle_chat(self, event: ChatModelEvent, eid: str) -> list[Event] | None:
        try:
            answer, errors = self.model_loop(
                eid, event.model, list(event.messages), event.max_iterations
            )
        except Suspend:
            return None
        children: list[Event] = list(errors)
        if answer is not None:
            children.append(
                ChatModelResponseEvent(
                    model=event.model, response=answer, usage=self._loop_usage, request_id=eid
                )
            )
        return children

    def model_loop(
        self, prefix: str, model_name: str, messages: list[ChatMessage], max_iterations: int
    ) -> tuple[ChatMessage | None, list[ErrorEvent]]:
        """Call the model, run its tool calls, feed the results back, until it answers.

        Returns the final answer (None when the loop failed; the last error says why) and the
        errors met on the way. Raises `Suspend` when a result is not journaled yet.
        """
        self._loop_usage = _NO_USAGE
        spec = self.compiled.models.get(model_name)
        if spec is None:
            return None, [
                _error(
                    "UserError",
                    f"unknown model {model_name!r}; the workflow defines "
                    f"{sorted(self.compiled.models)!r}",
                    source="ChatModelEvent",
                )
            ]
        errors: list[ErrorEvent] = []
        try:
            schemas, routes = self._catalog(spec, errors)
            system = self._system_prompt(spec)
        except ToolError as exc:
            return None, [*errors, _error("ToolError", str(exc), source="ChatModelEvent")]
        convo = list(messages)
        if system and not (convo and convo[0].role == "system"):
            convo.insert(0, ChatMessage.system(system))

        def request_payload() -> dict[str, Any]:
            return {
                "messages": [m.model_dump(mode="json") for m in convo],
                "tools": [s.model_dump(mode="json") for s in schemas],
            }

        for i in range(max_iterations):
            result = self.await_one(
                f"{prefix}/model.{i}",
                EffectKind.MODEL,
                model_name,
                request_payload,
                rate_key=spec.model.rate_key,
            )
            if result.error is not None:
                err = result.error
                errors.append(
                    _error(
                        err.error_type,
                        f"model {model_name!r} failed: {err.message}",
                        retryable=err.retryable,
                        source="ChatModelEvent",
                        cause=f"model {model_name!r} call {result.call_id!r}",
                    )
                )
                return None, errors
            chat = ChatResult.model_validate(result.value)
            self._loop_usage = self._loop_usage + (result.usage or chat.usage)
            answer = chat.message
            convo.append(answer)
            if not answer.tool_calls:
                return answer, errors
            convo.extend(self._run_tool_calls(prefix, i, answer, routes, errors))
        errors.append(
            _error(
                "MaxIterationsExceeded",
                f"model {model_name!r} still asked for tools after {max_iterations} calls; "
                "raise ChatModelEvent.max_iterations or check the tools' answers",
                source="ChatModelEvent",
            )
        )
        return None, errors

    def _run_tool_calls(
        self,
        prefix: str,
        i: int,
        answer: ChatMessage,
        routes: dict[str, tuple[EffectKind, str]],
        errors: list[ErrorEvent],
    ) -> list[ChatMessage]:
        """Run one answer's tool calls in parallel; return the tool messages in call order."""
        replies: list[ChatMessage | None] = []
        requests: list[tuple[int, EffectRequest]] = []
        failures: dict[int, ErrorEvent] = {}  # by call index, so errors keep the calls' order
        for j, call in enumerate(answer.tool_calls):
            problem: str | None = None
            arguments: Any = None
            route = routes.get(call.name)
            if route is None:
                problem = f"unknown tool {call.name!r}; available tools: {sorted(routes)!r}"
            else:
                try:
                    arguments = json.loads(call.arguments or "{}")
                except json.JSONDecodeError as exc:
                    problem = f"invalid JSON arguments for tool {call.name!r}: {exc}"
                if problem is None and not isinstance(arguments, dict):
                    problem = f"arguments for tool {call.name!r} must be a JSON object"
            if problem is not None:
                failures[j] = _error("ToolError", problem, source="ChatModelEvent")
                replies.append(ChatMessage.tool(call.id, f"error: {problem}", name=call.name))
                continue
            assert route is not None
            kind, target = route
            replies.append(None)
            requests.append(
                (
                    j,
                    EffectRequest(
                        call_id=f"{prefix}/tool.{i}.{j}",
                        kind=kind,
                        target=target,
                        payload={"arguments": arguments},
                    ),
                )
            )
        results = self.await_all([r for _, r in requests])
        requests_by_j = dict(requests)
        for (j, _), result in zip(requests, results, strict=True):
            call = answer.tool_calls[j]
            if result.error is not None:
                err = result.error
                text = f"tool {call.name!r} failed: {err.error_type}: {err.message}"
                failures[j] = _error(
                    err.error_type,
                    text,
                    retryable=err.retryable,
                    source="ChatModelEvent",
                    cause=f"{requests_by_j[j].kind.value} {requests_by_j[j].target!r} call "
                    f"{result.call_id!r}",
                )
                replies[j] = ChatMessage.tool(call.id, f"error: {text}", name=call.name)
            else:
                replies[j] = ChatMessage.tool(call.id, _tool_text(result.value), name=call.name)
        errors.extend(failures[j] for j in sorted(failures))
        return [r for r in replies if r is not None]

    def _catalog(
        self, spec: ModelSpec, errors: list[ErrorEvent]
    ) -> tuple[list[ToolSchema], dict[str, tuple[EffectKind, str]]]:
        schemas: list[ToolSchema] = []
        routes: dict[str, tuple[EffectKind, str]] = {}
        for name in spec.tools:
            schemas.append(self.compiled.tools[name].schema)
            routes[name] = (EffectKind.TOOL, name)
        if spec.mcp_servers:
            allow = None if spec.mcp_allow is None else set(spec.mcp_allow)
            for server, offered in self.mcp_tools(spec.mcp_servers).items():
                for schema in offered:
                    if schema.name in routes or (allow is not None and schema.name not in allow):
                        continue
                    schemas.append(schema)
                    routes[schema.name] = (EffectKind.MCP, f"{server}/{schema.name}")
            missing = sorted((allow or set()) - set(routes))
            if missing:
                errors.append(
                    _error(
                        "ToolError",
                        f"model {spec.name!r} allows tools {missing!r}, which neither its local "
                        f"tools nor its MCP servers {list(spec.mcp_servers)!r} offer",
                        source="ChatModelEvent",
                    )
                )
        return schemas, routes

    def _system_prompt(self, spec: ModelSpec) -> str | None:
        prompt = spec.prompt
        if spec.remote_prompt is not None:
            server_part, sep, prompt_name = spec.remote_prompt.rpartition("/")
            servers = [server_part] if sep else list(spec.mcp_servers)
            requests = [
                EffectRequest(
                    call_id=f"{self.turn_id}/mcp.{server}.prompt.{prompt_name}",
                    kind=EffectKind.MCP,
                    target=server,
                    payload={"op": "get_prompt", "name": prompt_name},
                )
                for server in servers
            ]
            found = [r.value for r in self.await_all(requests) if r.error is None]
            if not found:
                raise ToolError(
                    f"no MCP server of model {spec.name!r} ({servers!r}) serves prompt "
                    f"{prompt_name!r}"
                )
            prompt = str(found[0])
        if spec.output_instruction:
            prompt = f"{prompt}\n\n{spec.output_instruction}" if prompt else spec.output_instruction
        return prompt


def _error(
    error_type: str,
    message: str,
    *,
    retryable: bool = False,
    source: str | None = None,
    cause: str | None = None,
) -> ErrorEvent:
    """An ErrorEvent; ``cause`` names the call that failed (its kind, target and call id)."""
    return ErrorEvent(
        error_type=error_type,
        message=message,
        retryable=retryable,
        source_event=source,
        cause=cause,
    )


def _step_error(exc: Exception, event: Event, step_name: str) -> ErrorEvent:
    cause = "".join(traceback.format_exception_only(exc)).strip()
    return ErrorEvent(
        error_type=type(exc).__name__,
        message=f"step {step_name!r} raised {type(exc).__name__}: {exc}",
        retryable=bool(getattr(exc, "retryable", False)),
        source_event=type(event).__name__,
        step=step_name,
        cause=cause,
    )


def _tool_failure(
    tool_name: str,
    call_id: str,
    error_type: str,
    message: str,
    retryable: bool,
    *,
    cause: str | None = None,
) -> list[Event]:
    text = f"tool {tool_name!r} failed: {error_type}: {message}"
    return [
        ToolResultEvent(tool_name=tool_name, result=text, is_error=True, call_id=call_id),
        _error(error_type, text, retryable=retryable, source="ToolCallEvent", cause=cause),
    ]


def _tool_text(value: Any) -> str:
    """How a tool's result is shown to a model: strings as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
