"""Time-ordered message ids (UUIDv7, RFC 9562).

Python 3.11 has no `uuid.uuid7`, so we build it: 48 bits of Unix milliseconds, then a 12-bit
counter that keeps ids minted in one process strictly increasing within a millisecond
(RFC 9562 method 1), then 62 random bits. Sorting ids sorts them by creation time, which
makes Kafka logs and journals easy to read.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["new_message_id", "uuid7_time", "uuid_from_bytes", "uuid_from_int"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_new = object.__new__
_setattr = object.__setattr__
_SAFE = uuid.SafeUUID.unknown


def uuid_from_int(value: int) -> uuid.UUID:
    """Build a `UUID` without `UUID.__init__`'s argument parsing (hot path)."""
    result = _new(uuid.UUID)
    _setattr(result, "int", value)
    _setattr(result, "is_safe", _SAFE)
    return result


def uuid_from_bytes(data: bytes) -> uuid.UUID:
    """Build a `UUID` from its 16 big-endian bytes; the caller checks the length."""
    return uuid_from_int(int.from_bytes(data, "big"))


def new_message_id() -> uuid.UUID:
    """Return a fresh UUIDv7; ids from one process are strictly increasing."""
    global _last_ms, _counter
    now_ms = time.time_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    return uuid_from_int(value)


def uuid7_time(message_id: uuid.UUID) -> float:
    """The creation time (Unix seconds) encoded in a UUIDv7."""
    return (message_id.int >> 80) / 1000.0
