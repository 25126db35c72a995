"""The envelope wire format: a 12-byte fixed header, a msgpack header array, the payload.

```
offset size field
0      2    magic "FA" (0x46 0x41)
2      1    format version (1)
3      1    flags (0; a reader refuses bits it does not know)
4      4    header length H  (uint32, big-endian)
8      4    payload length P (uint32, big-endian)
12     H    header: msgpack array [recipient, type_name, type_version, message_id, sender,
            correlation_id, causation_id, traceparent, tracestate, created_at, deadline,
            attempt, headers]
12+H   P    payload: msgpack of the message's JSON-mode dump, keyed by wire names
```

The header is positional (no field names on the wire) and comes before the payload, so
routing (`peek_route`) reads 12 bytes plus one short array, and the payload is validated
only by its consumer. docs/wire-format.md describes every field byte by byte.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack
from pydantic import BaseModel
from pydantic_core import SchemaValidator, core_schema

from protocols.addresses import (
    AgentAddress,
    TopicAddress,
    address_text,
    parse_address,
)
from protocols.envelope import (
    Envelope,
    EnvelopeHeader,
    dump_payload,
    pack_msgpack,
    validate_payload_bytes,
)
from protocols.errors import SerializationError
from protocols.failures import DeadLetterReason, DecodeFailure
from protocols.ids import uuid_from_bytes
from protocols.registry import MessageRegistry, _Resolved, default_registry
from protocols.trusted import trusted_model

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "RouteInfo",
    "decode_envelope",
    "encode_envelope",
    "peek_route",
]

MAGIC = b"FA"
FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 1 << 20
_HEADER = struct.Struct(">2sBBII")
HEADER_SIZE = _HEADER.size  # 12

_T = DeadLetterReason.TRUNCATED
_MAL = DeadLetterReason.MALFORMED
_new = object.__new__
_setattr = object.__setattr__
_unpackb = msgpack.unpackb
# Headers are packed by `protocols.envelope.pack_msgpack` (shared Packers, see there).
_unpack_header = _HEADER.unpack_from
_LEAD_STRUCT = struct.Struct(">4sII")
_unpack_lead = _LEAD_STRUCT.unpack_from
_pack_lead = _LEAD_STRUCT.pack
_LEAD = MAGIC + bytes((FORMAT_VERSION, 0))  # magic, format version, no flags
_HEADER_ITEMS = 13
_MISS: Any = object()
_ALL_FIELDS = set(EnvelopeHeader.model_fields)
"""The `__pydantic_fields_set__` of every decoded envelope (all fields were on the wire).

Shared, not copied: an `Envelope` is frozen, so pydantic never adds to it in place (its
copies, `model_copy(update=...)` included, take their own set)."""

# The header array's checks and conversions, in pydantic-core (one call instead of 30 type
# checks and two UUIDs built in Python): exact types as msgpack gives them, UUIDs from
# 16-byte bins, timestamps as floats (ints accepted), a map of strings to strings.
_STR = core_schema.str_schema(strict=True)
_STR_OR_NIL = core_schema.nullable_schema(_STR)
_POSITIVE = core_schema.int_schema(strict=True, ge=1)
_FLOAT = core_schema.float_schema(strict=True)
_UUID = core_schema.chain_schema(
    [core_schema.bytes_schema(strict=True, min_length=16, max_length=16), core_schema.uuid_schema()]
)
_UUID_OR_NIL = core_schema.nullable_schema(_UUID)
_check_header = SchemaValidator(
    core_schema.tuple_schema(
        [
            _STR,  # recipient
            _STR,  # type_name
            _POSITIVE,  # type_version
            _UUID,  # message_id
            _STR_OR_NIL,  # sender
            _UUID_OR_NIL,  # correlation_id
            _UUID_OR_NIL,  # causation_id
            _STR_OR_NIL,  # traceparent
            _STR_OR_NIL,  # tracestate
            _FLOAT,  # created_at
            core_schema.nullable_schema(_FLOAT),  # deadline
            _POSITIVE,  # attempt
            core_schema.dict_schema(_STR, _STR, strict=True),  # headers
        ]
    )
).validate_python


class RouteInfo(NamedTuple):
    """What routing needs, read without touching the payload."""

    recipient: str
    """The canonical recipient string: the Kafka key and the Flink key."""
    type_name: str
    type_version: int

    @property
    def address(self) -> AgentAddress | TopicAddress:
        """The recipient parsed (cached)."""
        return parse_address(self.recipient)


def encode_envelope(env: Envelope) -> bytes:
    """Serialize an envelope; raise `SerializationError` if it does not fit the format.

    A payload that was decoded but never read is written back as the exact bytes it came
    with, so forwarding an envelope costs no payload work.
    """
    private = env.__pydantic_private__
    found = private["_payload"]  # type: ignore[index]
    if found is not None:
        payload = dump_payload(found)
    elif private["_raw"] is not None:  # type: ignore[index]
        payload = private["_raw"]  # type: ignore[index]
    else:
        payload = dump_payload(env.payload)  # raises: an envelope built without a payload
    # Fields read from __dict__: attribute access on a pydantic model goes through its
    # `__getattr__` hook, which costs more than the dictionary lookup.
    d = env.__dict__
    recipient = d["recipient"]
    sender = d["sender"]
    corr = d["correlation_id"]
    caus = d["causation_id"]
    try:
        # Address strings from the identity memo (addresses made by parse_address are in it).
        recipient = address_text(recipient)
        if sender is not None:
            sender = address_text(sender)
        header = [
            recipient,
            d["type_name"],
            d["type_version"],
            d["message_id"].int.to_bytes(16, "big"),
            sender,
            None if corr is None else corr.int.to_bytes(16, "big"),
            None if caus is None else caus.int.to_bytes(16, "big"),
            d["traceparent"],
            d["tracestate"],
            d["created_at"],
            d["deadline"],
            d["attempt"],
            d["headers"],
        ]
        packed = pack_msgpack(header)
    except Exception as exc:
        raise SerializationError(f"cannot serialize envelope {env.message_id}: {exc}") from exc
    return b"".join((_pack_lead(_LEAD, len(packed), len(payload)), packed, payload))


def _frame(data: bytes, max_bytes: int) -> tuple[int, int] | DecodeFailure:
    """Check the fixed header; return the end offsets of the header array and the payload."""
    n = len(data)
    if n > max_bytes:
        return DecodeFailure(
            DeadLetterReason.OVERSIZE,
            f"envelope is {n} bytes; the limit is {max_bytes} (raise max_bytes to accept it)",
            data,
        )
    if n < HEADER_SIZE:
        if data[:2] != MAGIC[:n]:
            return _bad_magic(data)
        if n >= 3 and data[2] != FORMAT_VERSION:
            return _unknown_format(data, data[2], 0)
        return DecodeFailure(
            _T, f"truncated envelope: {n} bytes, the fixed header alone is 12", data
        )
    magic, version, flags, h_len, p_len = _unpack_header(data)
    if magic != MAGIC:
        return _bad_magic(data)
    if version != FORMAT_VERSION or flags:
        return _unknown_format(data, version, flags)
    header_end = HEADER_SIZE + h_len
    end = header_end + p_len
    if n < end:
        return DecodeFailure(_T, f"truncated envelope: {n} bytes, the header announces {end}", data)
    if n > end:
        return DecodeFailure(
            _MAL, f"{n - end} unexpected bytes after the envelope's {end} bytes", data
        )
    return header_end, end


def _bad_magic(data: bytes) -> DecodeFailure:
    return DecodeFailure(_MAL, f"not an envelope: magic {data[:2]!r}, expected {MAGIC!r}", data)


def _unknown_format(data: bytes, version: int, flags: int) -> DecodeFailure:
    return DecodeFailure(
        DeadLetterReason.UNKNOWN_FORMAT_VERSION,
        f"wire format version {version} with flags {flags:#04x}; this reader knows version "
        f"{FORMAT_VERSION} with flags 0x00: upgrade the consumer",
        data,
    )


def _header(data: bytes, header_end: int) -> list[Any] | DecodeFailure:
    """Unpack the header array and check its route part (the first three elements)."""
    try:
        header = _unpackb(data[HEADER_SIZE:header_end])
    except Exception as exc:
        return DecodeFailure(_MAL, f"header is not msgpack: {exc}", data)
    if type(header) is not list or len(header) != _HEADER_ITEMS:
        return DecodeFailure(
            _MAL, f"header must be a {_HEADER_ITEMS}-element array, got {header!r:.200}", data
        )
    problem = _route_problem(data, (header[0], header[1], header[2]))
    if problem is not None:
        return problem
    return header


def _route(data: bytes, header_end: int) -> RouteInfo | DecodeFailure:
    """Read and check the route (first three header elements) with a streaming unpacker."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(data[HEADER_SIZE:header_end])
    try:
        items = unpacker.read_array_header()
    except Exception:
        items = -1
    if items != _HEADER_ITEMS:
        return DecodeFailure(_MAL, f"header must be a {_HEADER_ITEMS}-element array", data)
    try:
        route = (unpacker.unpack(), unpacker.unpack(), unpacker.unpack())
    except Exception as exc:
        return DecodeFailure(_MAL, f"header is not msgpack: {exc!r}", data)
    problem = _route_problem(data, route)
    return problem if problem is not None else tuple.__new__(RouteInfo, route)


def _route_problem(data: bytes, route: tuple[Any, Any, Any]) -> DecodeFailure | None:
    recipient, type_name, type_version = route
    if type(recipient) is not str or type(type_name) is not str or type(type_version) is not int:
        return DecodeFailure(
            _MAL, f"header must start with [str, str, int], got {list(route)!r:.200}", data
        )
    if type_version < 1:
        return DecodeFailure(_MAL, f"type version {type_version} is not >= 1", data)
    try:
        parse_address(recipient)
    except Exception as exc:
        return DecodeFailure(_MAL, str(exc), data, type_name, type_version)
    return None


def peek_route(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RouteInfo | DecodeFailure:
    """Read recipient, type name and version without touching the payload. Never raises.

    Checks the fixed header (magic, format version, flags, lengths, size limit), that the
    header is an array of 13 elements, and the route: its first three elements (recipient
    address, type name, type version). The rest of the header array is checked by
    `decode_envelope`, like the payload.
    """
    try:
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        # Fast path, checks inlined: the route read by hand from the common encodings (array
        # of 13, fixstr/str8 strings, positive fixint version), without unpacking the header.
        try:
            if 15 <= n <= max_bytes and data[12] == 0x9D:
                lead, h_len, p_len = _unpack_lead(data)
                header_end = HEADER_SIZE + h_len
                if lead == _LEAD and n == header_end + p_len:
                    b = data[13]
                    if 0xA0 <= b <= 0xBF:
                        i = 14 + b - 0xA0
                        recipient = data[14:i].decode()
                    elif b == 0xD9:
                        i = 15 + data[14]
                        recipient = data[15:i].decode()
                    else:
                        i = header_end
                    b = data[i]
                    if 0xA0 <= b <= 0xBF:
                        j = i + 1 + b - 0xA0
                        type_name = data[i + 1 : j].decode()
                    elif b == 0xD9:
                        j = i + 2 + data[i + 1]
                        type_name = data[i + 2 : j].decode()
                    else:
                        j = header_end
                    if j < header_end and 1 <= data[j] <= 0x7F:
                        parse_address(recipient)
                        return tuple.__new__(RouteInfo, (recipient, type_name, data[j]))
        except Exception:
            pass  # the slow path below says what is wrong
        frame = _frame(data, max_bytes)
        if type(frame) is DecodeFailure:
            return frame
        return _route(data, frame[0])  # type: ignore[index]
    except Exception as exc:  # a bug of ours must not stop the job either
        return _internal_failure(data, exc)


def _internal_failure(data: object, exc: Exception) -> DecodeFailure:
    raw = data if type(data) is bytes else b""
    return DecodeFailure(_MAL, f"undecodable envelope: {type(exc).__name__}: {exc}", raw)  # type: ignore[arg-type]


def _is_uuid(value: object) -> bool:
    return type(value) is bytes and len(value) == 16  # type: ignore[arg-type]


def decode_envelope(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now: float | None = None,
    registry: MessageRegistry | None = None,
    validate: bool = True,
) -> Envelope | DecodeFailure:
    """Decode an envelope, or return a `DecodeFailure` saying why not. Never raises.

    Checks, in order: size limit, fixed header (magic, format version, lengths), the header
    array, the deadline against `now` (default: the clock), and that the type is registered.
    With `validate` (the default) the payload is validated here too, so an invalid payload
    is a failure now; with `validate=False` it is validated on first access of
    `Envelope.payload` (use `Envelope.try_payload()` to keep that non-raising).
    """
    # The fast path, checks inlined, takes the shapes the encoder writes. At the first thing
    # it does not expect it hands over to `_decode_checked`, which checks everything again
    # and says what is wrong, so it never has to explain anything itself.
    try:
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        if not HEADER_SIZE <= n <= max_bytes:
            return _decode_checked(data, max_bytes, now, registry, validate)
        lead, h_len, p_len = _unpack_lead(data)
        header_end = HEADER_SIZE + h_len
        if lead != _LEAD or n != header_end + p_len:
            return _decode_checked(data, max_bytes, now, registry, validate)
        try:
            header = _unpackb(data[HEADER_SIZE:header_end])
            (
                recipient,
                type_name,
                type_version,
                message_id,
                sender,
                corr,
                caus,
                traceparent,
                tracestate,
                created_at,
                deadline,
                attempt,
                headers,
            ) = _check_header(header)
            recipient_address = parse_address(recipient)
            if sender is not None:
                sender = parse_address(sender)
        except Exception:
            return _decode_checked(data, max_bytes, now, registry, validate)
        if deadline is not None and deadline <= (time.time() if now is None else now):
            return _expired(data, header)
        reg = default_registry if registry is None else registry
        resolved = reg._resolved.get((type_name, type_version), _MISS)
        if resolved is _MISS:
            resolved = reg.resolve(type_name, type_version)
        if resolved is None:
            return _unknown_type(reg, data, type_name, type_version, recipient)
        raw = data[header_end:]
        payload = None
        if validate:
            if not resolved.upcasters:
                try:
                    check = resolved.validate_python
                    if check is None:
                        check = _payload_validator(resolved)
                    payload = check(_unpackb(raw))
                except Exception:
                    payload = None
            if payload is None:  # upcasters to run, or something to explain
                payload = validate_payload_bytes(raw, type_name, type_version, reg, recipient, data)
                if type(payload) is DecodeFailure:
                    return payload
        # `trusted_model`, inlined: every field was checked above.
        env: Envelope = _new(Envelope)
        _setattr(
            env,
            "__dict__",
            {
                "message_id": message_id,
                "type_name": type_name,
                "type_version": type_version,
                "recipient": recipient_address,
                "sender": sender,
                "correlation_id": corr,
                "causation_id": caus,
                "traceparent": traceparent,
                "tracestate": tracestate,
                "created_at": created_at,
                "deadline": deadline,
                "attempt": attempt,
                "headers": headers,
            },
        )
        _setattr(env, "__pydantic_fields_set__", _ALL_FIELDS)
        _setattr(env, "__pydantic_extra__", None)
        _setattr(
            env,
            "__pydantic_private__",
            {"_payload": payload, "_raw": raw, "_wire": data, "_registry": registry},
        )
        return env
    except Exception as exc:  # a bug of ours must not stop the job either
        return _internal_failure(data, exc)


def _decode_checked(
    data: bytes,
    max_bytes: int,
    now: float | None,
    registry: MessageRegistry | None,
    validate: bool,
) -> Envelope | DecodeFailure:
    """`decode_envelope` with every check spelled out, naming what is wrong.

    Also takes what the fast path leaves out: ints for the timestamps, upcasters, payloads
    with fields the reader does not know.
    """
    frame = _frame(data, max_bytes)
    if type(frame) is DecodeFailure:
        return frame
    header_end, end = frame  # type: ignore[misc]
    header = _header(data, header_end)
    if type(header) is DecodeFailure:
        return header
    recipient_address = parse_address(header[0])  # type: ignore[index]
    (
        recipient,
        type_name,
        type_version,
        mid,
        sender,
        corr,
        caus,
        traceparent,
        tracestate,
        created_at,
        deadline,
        attempt,
        headers,
    ) = header  # type: ignore[misc]
    problem = _check_meta(header)  # type: ignore[arg-type]
    if problem is not None:
        return DecodeFailure(_MAL, problem, data, type_name, type_version, recipient)
    if sender is not None:
        try:
            sender = parse_address(sender)
        except Exception as exc:
            return DecodeFailure(_MAL, str(exc), data, type_name, type_version, recipient)
    if deadline is not None and deadline <= (time.time() if now is None else now):
        return _expired(data, header)  # type: ignore[arg-type]
    raw = data[header_end:end]
    reg = default_registry if registry is None else registry
    if reg.resolve(type_name, type_version) is None:
        return _unknown_type(reg, data, type_name, type_version, recipient)
    payload = None
    if validate:
        result = validate_payload_bytes(raw, type_name, type_version, reg, recipient, data)
        if type(result) is DecodeFailure:
            return result
        payload = result
    fields = {
        "message_id": uuid_from_bytes(mid),
        "type_name": type_name,
        "type_version": type_version,
        "recipient": recipient_address,
        "sender": sender,
        "correlation_id": None if corr is None else uuid_from_bytes(corr),
        "causation_id": None if caus is None else uuid_from_bytes(caus),
        "traceparent": traceparent,
        "tracestate": tracestate,
        "created_at": float(created_at),
        "deadline": None if deadline is None else float(deadline),
        "attempt": attempt,
        "headers": headers,
    }
    private = {"_payload": payload, "_raw": raw, "_wire": data, "_registry": registry}
    return trusted_model(Envelope, fields, private=private)


def _payload_validator(resolved: _Resolved) -> Callable[[Any], BaseModel]:
    """The payload class's `validate_python`, kept in `resolved` once the class is complete."""
    cls = resolved.cls
    check: Callable[[Any], BaseModel] = cls.__pydantic_validator__.validate_python  # type: ignore[assignment]
    if cls.__pydantic_complete__:
        resolved.validate_python = check
    return check


def _expired(data: bytes, header: list[Any]) -> DecodeFailure:
    return DecodeFailure(
        DeadLetterReason.EXPIRED,
        f"deadline {header[10]} passed before delivery (attempt {header[11]})",
        data,
        header[1],
        header[2],
        header[0],
    )


def _unknown_type(
    reg: MessageRegistry, data: bytes, type_name: str, type_version: int, recipient: str
) -> DecodeFailure:
    known = reg.versions(reg.canonical_name(type_name))
    return DecodeFailure(
        DeadLetterReason.UNKNOWN_TYPE,
        f"no message {type_name!r} version {type_version} is registered "
        f"(known versions: {known or 'none'}); register it with "
        f"@message({type_name!r}, version={type_version})",
        data,
        type_name,
        type_version,
        recipient,
    )


def _check_meta(header: list[object]) -> str | None:
    """Type-check the header's non-route elements by hand (cheaper than a validator)."""
    mid, sender, corr, caus, traceparent, tracestate, created_at, deadline, attempt, headers = (
        header[3:]
    )
    if not _is_uuid(mid):
        return f"message_id must be 16 bytes, got {mid!r:.60}"
    if sender is not None:
        if type(sender) is not str:
            return f"sender must be an address string or nil, got {sender!r:.60}"
        try:
            parse_address(sender)
        except Exception as exc:
            return str(exc)
    if corr is not None and not _is_uuid(corr):
        return f"correlation_id must be 16 bytes or nil, got {corr!r:.60}"
    if caus is not None and not _is_uuid(caus):
        return f"causation_id must be 16 bytes or nil, got {caus!r:.60}"
    if traceparent is not None and type(traceparent) is not str:
        return f"traceparent must be a string or nil, got {traceparent!r:.60}"
    if tracestate is not None and type(tracestate) is not str:
        return f"tracestate must be a string or nil, got {tracestate!r:.60}"
    if type(created_at) is not float and type(created_at) is not int:
        return f"created_at must be a number, got {created_at!r:.60}"
    if deadline is not None and type(deadline) is not float and type(deadline) is not int:
        return f"deadline must be a number or nil, got {deadline!r:.60}"
    if type(attempt) is not int or attempt < 1:
        return f"attempt must be an int >= 1, got {attempt!r:.60}"
    if type(headers) is not dict:
        return f"headers must be a map, got {headers!r:.60}"
    for key, value in headers.items():  # type: ignore[attr-defined]
        if type(key) is not str or type(value) is not str:
            return f"headers must map strings to strings, got {key!r:.60}: {value!r:.60}"
    return None
