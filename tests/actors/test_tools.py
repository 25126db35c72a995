"""Tools built from Python functions: schema from hints and docstrings, validation, calls."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Literal

import pytest
from pydantic import BaseModel

from actors.tools import Tool, parse_google_docstring
from protocols.errors import ToolError, UserError


def get_weather(city: str, unit: Literal["C", "F"] = "C", days: int = 1) -> str:
    """Get the weather forecast for a city.

    Looks the city up in the forecast service.

    Args:
        city: Name of the city,
            e.g. "Paris".
        unit (str): Temperature unit.
        days: How many days to forecast.

    Returns:
        The forecast as text.
    """
    return f"{city}: 21{unit} for {days} day(s)"


class Address(BaseModel):
    street: str
    zip_code: str


async def ship(order_id: int, to: Address, express: bool = False) -> dict[str, object]:
    """Ship an order.

    Args:
        order_id: The order to ship.
        to: Where to.
        express: Use the express service.
    """
    await asyncio.sleep(0)
    return {"order_id": order_id, "zip": to.zip_code, "express": express}


def explode(reason: str) -> None:
    """Always fails.

    Args:
        reason: Why.
    """
    raise RuntimeError(f"exploded: {reason}")


class Toolbox:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def greet(self, name: str) -> str:
        """Greet someone.

        Args:
            name: Who.
        """
        return f"{self.prefix} {name}"

    @staticmethod
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b


def test_schema_from_hints_and_google_docstring() -> None:
    tool = Tool.from_function(get_weather)

    assert tool.name == "get_weather"
    assert tool.description == (
        "Get the weather forecast for a city.\n\nLooks the city up in the forecast service."
    )
    params = tool.schema.parameters
    assert params["type"] == "object"
    assert params["required"] == ["city"]
    assert params["additionalProperties"] is False
    assert "title" not in params
    assert params["properties"]["city"] == {
        "type": "string",
        "description": 'Name of the city, e.g. "Paris".',
    }
    assert params["properties"]["unit"]["enum"] == ["C", "F"]
    assert params["properties"]["unit"]["default"] == "C"
    assert params["properties"]["unit"]["description"] == "Temperature unit."
    assert params["properties"]["days"]["type"] == "integer"
    assert tool.schema.name == "get_weather" and tool.schema.description == tool.description


def test_nested_model_parameter_and_name_override() -> None:
    tool = Tool.from_function(ship, name="ship_order")

    assert tool.name == "ship_order"
    params = tool.schema.parameters
    assert params["required"] == ["order_id", "to"]
    assert params["properties"]["to"]["$ref"].endswith("Address")
    assert "Address" in params["$defs"]


def test_parse_google_docstring_sections() -> None:
    description, args = parse_google_docstring(get_weather.__doc__)
    assert description.startswith("Get the weather forecast")
    assert "Returns" not in description
    assert args == {
        "city": 'Name of the city, e.g. "Paris".',
        "unit": "Temperature unit.",
        "days": "How many days to forecast.",
    }
    assert parse_google_docstring(None) == ("", {})


async def test_call_sync_tool_validates_and_coerces() -> None:
    tool = Tool.from_function(get_weather)
    assert await tool.call({"city": "Oslo", "days": "3"}) == "Oslo: 21C for 3 day(s)"
    assert await tool.call('{"city": "Rome", "unit": "F"}') == "Rome: 21F for 1 day(s)"


async def test_sync_tool_runs_off_the_event_loop_thread() -> None:
    seen: list[int | None] = []

    def which_thread() -> str:
        """Report the thread."""
        seen.append(threading.get_ident())
        return "ok"

    assert await Tool.from_function(which_thread).call({}) == "ok"
    assert seen and seen[0] != threading.get_ident()


def _thread_reporter(seen: list[int]):
    def which_thread() -> str:
        """Report the thread."""
        seen.append(threading.get_ident())
        return "ok"

    return which_thread


async def test_non_blocking_sync_tool_runs_on_the_event_loop_thread() -> None:
    """``blocking=False`` (``@tool(blocking=False)``) skips the thread hand-off, through the
    decorator on a Workflow, on an AgentWorkflow's local tools, and across pickling (how a
    tool reaches a Ray worker)."""
    from actors import AgentWorkflow, InputEvent, Workflow, step, tool

    seen: list[int] = []
    inline = Tool.from_function(_thread_reporter(seen), blocking=False)
    assert await inline.call({}) == "ok"
    assert seen == [threading.get_ident()]
    assert (
        pickle.loads(pickle.dumps(Tool.from_function(get_weather, blocking=False))).blocking
        is False
    )

    class Tools(Workflow):
        @tool(blocking=False)
        @staticmethod
        def fast(x: int) -> int:
            """Double x.

            Args:
                x: a number.
            """
            return 2 * x

        @tool
        @staticmethod
        def slow(x: int) -> int:
            """Triple x.

            Args:
                x: a number.
            """
            return 3 * x

        @step(InputEvent)
        def on_input(event, state, ctx):  # noqa: N805
            pass

    compiled = Tools().compiled()
    assert compiled.tools["fast"].blocking is False and compiled.tools["slow"].blocking is True
    from actors.testing import TestModel

    local = AgentWorkflow(
        model=TestModel(), local_tools=[tool(blocking=False)(_thread_reporter(seen))]
    )
    assert local.compiled().tools["which_thread"].blocking is False


async def test_async_tool_with_nested_model() -> None:
    tool = Tool.from_function(ship)
    assert tool.is_async
    result = await tool.call({"order_id": 7, "to": {"street": "Main", "zip_code": "75001"}})
    assert result == {"order_id": 7, "zip": "75001", "express": False}


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({}, "city: Field required"),
        ({"city": "Paris", "unit": "K"}, "unit: Input should be 'C' or 'F'"),
        ({"city": "Paris", "days": "many"}, "days: Input should be a valid integer"),
        ({"city": "Paris", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ('{"city": ', "not valid JSON"),
        ("[1, 2]", "got arguments of type 'list'"),
    ],
)
async def test_invalid_arguments_raise_tool_error(arguments: object, fragment: str) -> None:
    tool = Tool.from_function(get_weather)
    with pytest.raises(ToolError) as info:
        await tool.call(arguments)  # type: ignore[arg-type]
    message = str(info.value)
    assert "'get_weather'" in message
    assert fragment in message
    if isinstance(arguments, dict) or "JSON" in fragment:
        assert info.value.__cause__ is not None  # the pydantic / json error is kept


async def test_raising_tool_becomes_tool_error_with_cause() -> None:
    tool = Tool.from_function(explode)
    with pytest.raises(
        ToolError, match=r"tool 'explode' raised RuntimeError: exploded: now"
    ) as info:
        await tool.call({"reason": "now"})
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_async_tool_that_raises() -> None:
    async def bad(x: int) -> int:
        """Fails."""
        raise ValueError(f"bad {x}")

    with pytest.raises(ToolError, match="raised ValueError: bad 2") as info:
        await Tool.from_function(bad).call({"x": 2})
    assert isinstance(info.value.__cause__, ValueError)


async def test_bound_method_and_staticmethod_object() -> None:
    box = Toolbox("hello")
    greet = Tool.from_function(box.greet)
    assert "self" not in greet.schema.parameters["properties"]
    assert greet.schema.parameters["required"] == ["name"]
    assert await greet.call({"name": "Ada"}) == "hello Ada"

    add = Tool.from_function(Toolbox.__dict__["add"])  # the raw staticmethod object
    assert add.name == "add" and add.description == "Add two numbers."
    assert await add.call({"a": 2, "b": 3}) == 5


async def test_unannotated_parameters_accept_anything() -> None:
    # The proposal's `def my_tool(args)` form: no hints at all.
    def my_tool(args):  # type: ignore[no-untyped-def]
        """Google style description of the tool."""
        return args

    tool = Tool.from_function(my_tool)
    assert tool.description == "Google style description of the tool."
    assert tool.schema.parameters["required"] == ["args"]
    assert await tool.call({"args": [1, "x"]}) == [1, "x"]


def test_var_args_are_rejected_at_definition() -> None:
    def loose(*items: int) -> int:
        return len(items)

    def keywords(**options: str) -> int:
        return len(options)

    with pytest.raises(UserError, match=r"tool 'loose' takes \*items"):
        Tool.from_function(loose)
    with pytest.raises(UserError, match=r"tool 'keywords' takes \*options"):
        Tool.from_function(keywords)


async def test_tool_pickles_by_function() -> None:
    tool = Tool.from_function(get_weather, name="weather")
    clone = pickle.loads(pickle.dumps(tool))
    assert clone.name == "weather"
    assert clone.schema == tool.schema
    assert await clone.call({"city": "Lima"}) == "Lima: 21C for 1 day(s)"
