"""Message registry: lookups, conflicts, aliases, upcasters and schema evolution both ways."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from protocols import (
    DeadLetterReason,
    DecodeFailure,
    Envelope,
    MessageRegistry,
    OpenStrEnum,
    UserError,
    decode_envelope,
    default_registry,
    encode_envelope,
    message,
    upcaster,
)
from protocols.events import (
    ChatModelEvent,
    ChatModelResponseEvent,
    ErrorEvent,
    InputEvent,
    OutputEvent,
    ToolCallEvent,
    ToolResultEvent,
)


def _send(payload: BaseModel, writer: MessageRegistry, reader: MessageRegistry) -> Any:
    """Encode with the writer's registry, decode with the reader's; return the payload."""
    env = Envelope.wrap(payload, recipient="shop/1", registry=writer)
    result = decode_envelope(encode_envelope(env), registry=reader)
    assert not isinstance(result, DecodeFailure), result
    return result.payload


def test_builtin_events_are_registered_at_import() -> None:
    for cls in (
        InputEvent,
        OutputEvent,
        ChatModelEvent,
        ChatModelResponseEvent,
        ToolCallEvent,
        ToolResultEvent,
        ErrorEvent,
    ):
        entry = default_registry.type_of(cls)
        assert (entry.name, entry.version) == (cls.builtin_name, 1)
        assert default_registry.get(cls.builtin_name, 1) is cls


def test_message_decorator_returns_the_class_and_registers_it() -> None:
    reg = MessageRegistry()

    class Order(BaseModel):
        order_id: str

    assert message("shop.Order", registry=reg)(Order) is Order
    assert reg.get("shop.Order", 1) is Order
    assert reg.type_of(Order).name == "shop.Order"
    assert reg.find("shop.Order", 2) is None
    assert reg.versions("shop.Order") == [1]
    assert Order in reg and ("shop.Order", 1) in reg and len(reg) == 1


def test_conflicts_are_refused_with_clear_messages() -> None:
    reg = MessageRegistry()

    @message("shop.Order", registry=reg)
    class Order(BaseModel):
        order_id: str

    message("shop.Order", registry=reg)(Order)  # the same class again: idempotent

    class Other(BaseModel):
        order_id: int

    with pytest.raises(UserError, match=r"'shop.Order' version 1 is already registered by") as e:
        message("shop.Order", registry=reg)(Other)
    assert "'order_id'" in str(e.value)  # names the field whose type differs
    with pytest.raises(UserError, match="already registered as message 'shop.Order'"):
        message("shop.Order2", registry=reg)(Order)
    with pytest.raises(UserError, match="is invalid"):
        message("bad name", registry=reg)(Other)
    with pytest.raises(UserError, match="version must be an int >= 1"):
        message("shop.X", version=0, registry=reg)(Other)
    with pytest.raises(UserError, match="only register pydantic models"):
        message("shop.Y", registry=reg)(int)  # type: ignore[type-var]
    with pytest.raises(UserError, match="not a registered message"):
        reg.type_of(Other)
    with pytest.raises(UserError, match="no message 'shop.Nope' version 1"):
        reg.get("shop.Nope", 1)


def test_wrap_refuses_unregistered_payloads() -> None:
    class Loose(BaseModel):
        x: int = 0

    with pytest.raises(UserError, match="'.*Loose' is not a registered message"):
        Envelope.wrap(Loose(), recipient="a/b")


def test_type_alias_reads_messages_written_under_the_old_name() -> None:
    old, new = MessageRegistry(), MessageRegistry()

    @message("shop.Order", registry=old)
    class OrderV1(BaseModel):
        order_id: str

    @message("shop.OrderPlaced", aliases=["shop.Order"], registry=new)
    class OrderPlaced(BaseModel):
        order_id: str

    got = _send(OrderV1(order_id="7"), old, new)
    assert got == OrderPlaced(order_id="7")
    assert new.canonical_name("shop.Order") == "shop.OrderPlaced"


def test_upcasters_migrate_old_versions_in_a_chain() -> None:
    writer, reader = MessageRegistry(), MessageRegistry()

    @message("shop.Order", version=1, registry=writer)
    class V1(BaseModel):
        amount: int

    @message("shop.Order", version=3, registry=reader)
    class V3(BaseModel):
        amount_cents: int
        currency: str

    @upcaster("shop.Order", 1, registry=reader)
    def one_to_two(data: dict[str, Any]) -> dict[str, Any]:
        return {"amount_cents": data["amount"] * 100}

    @reader.upcaster("shop.Order", 2)
    def two_to_three(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": "EUR"}

    assert _send(V1(amount=3), writer, reader) == V3(amount_cents=300, currency="EUR")
    # A version newer than any registered one is an unknown type, not a guess.
    env = Envelope.wrap(V3(amount_cents=1, currency="EUR"), recipient="shop/1", registry=reader)
    data = encode_envelope(env).replace(b"\xaashop.Order\x03", b"\xaashop.Order\x04")
    result = decode_envelope(data, registry=reader)
    assert isinstance(result, DecodeFailure)
    assert result.reason is DeadLetterReason.UNKNOWN_TYPE
    assert "known versions: [3]" in result.message


def test_an_upcaster_that_fails_gives_an_invalid_payload_failure() -> None:
    writer, reader = MessageRegistry(), MessageRegistry()

    @message("m", version=1, registry=writer)
    class A(BaseModel):
        x: int

    @message("m", version=2, registry=reader)
    class B(BaseModel):
        y: int

    reader.add_upcaster("m", 1, lambda d: {"y": d["missing"]})
    env = Envelope.wrap(A(x=1), recipient="a/b", registry=writer)
    result = decode_envelope(encode_envelope(env), registry=reader)
    assert isinstance(result, DecodeFailure)
    assert result.reason is DeadLetterReason.INVALID_PAYLOAD


# --- compatible changes decode both ways -------------------------------------------------


def test_new_optional_field_both_ways() -> None:
    old, new = MessageRegistry(), MessageRegistry()

    @message("shop.Order", registry=old)
    class Old(BaseModel):
        model_config = ConfigDict(extra="forbid")  # even a strict reader ignores new fields
        order_id: str

    @message("shop.Order", registry=new)
    class New(BaseModel):
        model_config = ConfigDict(extra="forbid")
        order_id: str
        note: str | None = None

    assert _send(Old(order_id="1"), old, new) == New(order_id="1")
    assert _send(New(order_id="1", note="gift"), new, old) == Old(order_id="1")
    assert new.compare(old.snapshot()) == []


class Color(OpenStrEnum):
    RED = "red"
    UNKNOWN = "unknown"


class ColorV2(OpenStrEnum):
    RED = "red"
    BLUE = "blue"
    UNKNOWN = "unknown"


def test_new_enum_value_is_read_as_unknown_by_old_readers() -> None:
    old, new = MessageRegistry(), MessageRegistry()

    @message("paint", registry=old)
    class Old(BaseModel):
        color: Color

    @message("paint", registry=new)
    class New(BaseModel):
        color: ColorV2

    assert _send(New(color=ColorV2.BLUE), new, old) == Old(color=Color.UNKNOWN)
    assert _send(Old(color=Color.RED), old, new) == New(color=ColorV2.RED)
    assert new.compare(old.snapshot()) == []
    # Removing a value is not compatible: old messages carry it.
    problems = old.compare(new.snapshot())
    assert any("'color'" in p and "removed" in p for p in problems)


def test_rename_through_an_alias_both_ways() -> None:
    old, new = MessageRegistry(), MessageRegistry()

    @message("person", registry=old)
    class Old(BaseModel):
        name: str

    @message("person", registry=new)
    class New(BaseModel):
        full_name: str = Field(
            validation_alias=AliasChoices("full_name", "name"), serialization_alias="name"
        )

    assert _send(Old(name="Ada"), old, new).full_name == "Ada"
    assert _send(New(full_name="Ada"), new, old) == Old(name="Ada")
    assert new.compare(old.snapshot()) == []


# --- incompatible changes are refused at registration -------------------------------------


def _pinned(snapshot_of: type[BaseModel], name: str = "shop.Order") -> MessageRegistry:
    recorder = MessageRegistry()
    recorder.register(snapshot_of, name)
    reg = MessageRegistry()
    reg.pin(recorder.snapshot())
    return reg


class _Base(BaseModel):
    order_id: str
    amount: int
    note: str | None = None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"order_id": (str, ...), "amount": (int, ...), "customer": (str, ...)}, "'customer'"),
        ({"order_id": (str, ...), "amount": (str, ...)}, "field 'amount': type changed"),
        ({"order_id": (str, ...)}, "'amount' was removed"),
        ({"order_id": (str, ...), "amount": (int, ...), "note": (str, ...)}, "'note' became"),
    ],
)
def test_incompatible_change_is_refused_naming_the_field(
    fields: dict[str, Any], expected: str
) -> None:
    from pydantic import create_model

    changed = create_model("Order", **fields)  # type: ignore[call-overload]
    reg = _pinned(_Base)
    with pytest.raises(UserError, match="incompatible with its recorded schema") as info:
        message("shop.Order", registry=reg)(changed)
    assert expected in str(info.value)
    assert "version 2" in str(info.value)  # says the fix
    # The same class under a new version is accepted.
    message("shop.Order", version=2, registry=reg)(changed)


def test_compatible_change_is_accepted_by_a_pinned_registry() -> None:
    class Order(_Base):
        coupon: str | None = None

    reg = _pinned(_Base)
    message("shop.Order", registry=reg)(Order)
    assert reg.get("shop.Order", 1) is Order


def test_pin_checks_what_is_already_registered() -> None:
    recorder = MessageRegistry()
    recorder.register(_Base, "shop.Order")

    class Changed(BaseModel):
        order_id: int

    reg = MessageRegistry()
    reg.register(Changed, "shop.Order")
    with pytest.raises(UserError, match="'order_id'"):
        reg.pin(recorder.snapshot())


def test_nested_model_changes_are_named_by_path() -> None:
    class Line(BaseModel):
        sku: str

    class LineV2(BaseModel):
        sku: str
        qty: int

    class Order(BaseModel):
        lines: list[Line]

    class OrderV2(BaseModel):
        lines: list[LineV2]

    reg = _pinned(Order)
    with pytest.raises(UserError, match=r"'lines\[\]\.qty' was added without a default"):
        message("shop.Order", registry=reg)(OrderV2)


def test_changed_default_is_incompatible_because_defaults_are_not_written() -> None:
    class Line(BaseModel):
        qty: int = 1

    class Order(BaseModel):
        priority: int = 0
        lines: list[Line] = []

    class PriorityChanged(BaseModel):
        priority: int = 5
        lines: list[Line] = []

    class LineV2(BaseModel):
        qty: int = 2

    class NestedChanged(BaseModel):
        priority: int = 0
        lines: list[LineV2] = []

    with pytest.raises(UserError, match=r"'priority': default changed from 0 to 5"):
        message("shop.Order", registry=_pinned(Order))(PriorityChanged)
    with pytest.raises(UserError, match=r"'lines\[\]\.qty': default changed from 1 to 2"):
        message("shop.Order", registry=_pinned(Order))(NestedChanged)
    # A default equal to the value is left out of the payload, and read back.
    reg = MessageRegistry()
    message("shop.Order", registry=reg)(Order)
    env = Envelope.wrap(Order(lines=[Line()]), recipient="shop/1", registry=reg)
    assert len(env.payload_bytes) < 20
    assert _send(Order(lines=[Line()]), reg, reg) == Order(lines=[Line()])
