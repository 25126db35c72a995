"""The definition API: decorators in every form, inheritance, definition-time validation,
state, and the package's public names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import actors
from actors import (
    ChatModelEvent,
    ChatModelResponseEvent,
    Event,
    InputEvent,
    OutputEvent,
    State,
    ToolResultEvent,
    Workflow,
    model,
    step,
    tool,
)
from actors.testing import TestModel
from protocols.errors import UserError


class Base(Workflow):
    @staticmethod  # staticmethod outside
    @tool
    def outer(x: int) -> int:
        """Outer form.

        Args:
            x: a number.
        """
        return x

    @tool(name="renamed")
    def method_tool(self, y: str) -> str:
        """A method tool using self.

        Args:
            y: text.
        """
        return f"{self.suffix}{y}"

    suffix = "!"

    @model(name="llm")
    def make_model(self):
        return TestModel(tools=["outer", "renamed"])

    @step
    def on_input(self, event: InputEvent, state: Any, ctx: Any) -> None:
        ctx.send_event(ChatModelEvent(model="llm", messages=[str(event.input)]))

    @step
    def on_any(event: ToolResultEvent | OutputEvent, state: Any, ctx: Any) -> None:
        pass


class Child(Base):
    suffix = "?"

    @step(Event)
    def audit(self, event: Event, state: Any, ctx: Any) -> None:
        state.setdefault("seen", []).append(type(event).__name__)
        if isinstance(event, ChatModelResponseEvent):
            ctx.send_event(OutputEvent(event.response.content))


def test_decorators_in_every_form_and_inheritance() -> None:
    compiled = Child().compiled()
    assert sorted(compiled.tools) == ["outer", "renamed"]
    assert [s.name for s in compiled.steps] == ["on_input", "on_any", "audit"]
    assert compiled.steps[0].takes_self and not compiled.steps[1].takes_self
    assert compiled.steps[1].events == (ToolResultEvent, OutputEvent)
    assert compiled.models["llm"].tools == ("outer", "renamed")
    assert compiled.tools["renamed"].schema.parameters["required"] == ["y"]
    # decorators return the function unchanged: still callable as written
    assert Base.outer(3) == 3


async def test_inherited_members_bind_to_the_subclass_instance() -> None:
    runner = actors.LocalRunner(Child())
    [answer] = await runner.send("k", "hi")
    assert answer == '{"outer": "0", "renamed": "?a"}'  # self is the Child instance
    state = runner.state("k")
    assert state["seen"][:3] == ["InputEvent", "ChatModelEvent", "ChatModelResponseEvent"]


def test_a_model_naming_a_missing_tool_fails_at_definition() -> None:
    class W(Workflow):
        @model
        @staticmethod
        def llm():
            return TestModel(tools=["get_wether"])

        @step(InputEvent)
        def s(event: Event, state: Any, ctx: Any) -> None:
            pass

    with pytest.raises(UserError, match="names tool 'get_wether', which is not defined"):
        W()


def test_a_model_naming_a_missing_mcp_server_fails_at_definition() -> None:
    class W(Workflow):
        @model
        @staticmethod
        def llm():
            return TestModel(mcp_servers=["nowhere"])

        @step(InputEvent)
        def s(event: Event, state: Any, ctx: Any) -> None:
            pass

    with pytest.raises(UserError, match="MCP server 'nowhere'"):
        W()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("def s(event, state): pass", r"exactly \(event, state, ctx\)"),
        ("def s(self, event, state, ctx, extra): pass", r"exactly \(event, state, ctx\)"),
        ("async def s(event, state, ctx): pass", "is async"),
        ("def s(event: int, state, ctx): pass", "annotated with Event"),
        ("def s(event, state, ctx): pass", "annotated with Event"),
    ],
)
def test_bad_steps_fail_at_class_creation(body: str, match: str) -> None:
    decorator = "@step" if "annotated" in match else "@step(InputEvent)"
    source = f"class W(Workflow):\n    {decorator}\n    {body}\n"
    with pytest.raises(UserError, match=match):
        exec(source, {"Workflow": Workflow, "step": step, "InputEvent": InputEvent})


def test_step_rejects_non_event_types() -> None:
    with pytest.raises(UserError, match="Event subclasses"):
        step(str)


def test_duplicate_names_fail_at_class_creation() -> None:
    with pytest.raises(UserError, match="defines tool 'x' twice"):

        class W(Workflow):
            @tool(name="x")
            @staticmethod
            def a() -> int:
                """A."""
                return 1

            @tool(name="x")
            @staticmethod
            def b() -> int:
                """B."""
                return 2


def test_a_workflow_without_steps_and_bad_factories_fail() -> None:
    class Empty(Workflow):
        pass

    with pytest.raises(UserError, match="has no @step"):
        Empty()

    class BadModel(Workflow):
        @model
        @staticmethod
        def llm():
            return "gpt-4o"

        @step(InputEvent)
        def s(event: Event, state: Any, ctx: Any) -> None:
            pass

    with pytest.raises(UserError, match="return a ChatModel"):
        BadModel()


def test_state_type_must_be_a_pydantic_model() -> None:
    with pytest.raises(UserError, match="state_type"):

        class W(Workflow):
            state_type = dict  # type: ignore[assignment]


def test_default_state_is_mapping_like() -> None:
    state = State()
    state.messages.append("hi")
    state["count"] = 1
    state.other = "x"
    assert state["messages"] == ["hi"] and state.count == 1 and state["other"] == "x"
    assert "count" in state and "missing" not in state
    assert state.get("missing", 0) == 0 and state.keys() == ["messages", "count", "other"]
    del state["count"]
    assert "count" not in state
    with pytest.raises(KeyError):
        state["count"]


def test_typed_state() -> None:
    class Counter(BaseModel):
        n: int = 0

    class W(Workflow):
        state_type = Counter

        @step(InputEvent)
        def s(event: Event, state: Counter, ctx: Any) -> None:
            state.n += 1

    runner = actors.LocalRunner(W())
    runner.run_sync([("a", 1), ("a", 2), ("b", 3)])
    assert runner.state("a") == Counter(n=2) and runner.state("b") == Counter(n=1)
    runner.close_sync()


def test_public_names() -> None:
    public = {n for n in dir(actors) if not n.startswith("_")} - {
        "annotations",
        "importlib",
        "TYPE_CHECKING",
        "Any",
    }
    modules = {"context", "decorators", "engine", "executor", "react", "runner", "state"}
    modules |= {"workflow", "testing", "tools", "mcp", "models", "effects", "admission"}
    modules |= {"memory", "context_sources", "messaging", "simulation"}
    assert public - modules <= set(actors.__all__)
    assert actors.__all__ == sorted(actors.__all__)
    for name in actors.__all__:
        assert getattr(actors, name) is not None
