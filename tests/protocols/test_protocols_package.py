"""Package surface: import hygiene, exports, the state codec, and the CI schema check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import protocols
from protocols import SerializationError
from protocols.codec import packb, unpackb
from protocols.events import ChatMessage, ToolCall

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_importing_protocols_pulls_in_no_runtime_package() -> None:
    code = (
        "import sys, protocols, protocols.schema_check, protocols.codec\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('ray', 'pyflink', 'actors', 'flink_bridge', 'confluent_kafka', 'py4j')]\n"
        "print(bad)"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_all_is_sorted_and_complete() -> None:
    assert protocols.__all__ == sorted(protocols.__all__)
    public = {
        name
        for name, value in vars(protocols).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    assert public - {"annotations"} == set(protocols.__all__)
    for name in protocols.__all__:
        assert getattr(protocols, name) is not None


def test_codec_round_trips_plain_data_and_models() -> None:
    msg = ChatMessage.assistant("hi", [ToolCall(id="1", name="f")])
    data = {"n": 1, 2: [b"raw", None, 1.5], "msg": msg, "tags": {"a"}}
    back = unpackb(packb(data))
    assert back[2] == [b"raw", None, 1.5] and back["tags"] == ["a"]
    assert ChatMessage.model_validate(back["msg"]) == msg


def test_codec_errors_are_serialization_errors() -> None:
    class Opaque:
        pass

    with pytest.raises(SerializationError, match="Opaque"):
        packb({"x": Opaque()})
    with pytest.raises(SerializationError, match="cannot unpack"):
        unpackb(b"\xc1")


def test_schema_check_passes_on_the_committed_snapshot() -> None:
    result = _run("-m", "protocols.schema_check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "compatible with" in result.stdout


def test_schema_check_fails_on_an_incompatible_change(tmp_path: Path) -> None:
    snapshot = json.loads((ROOT / "protocols" / "schema_snapshot.json").read_text())
    fields = snapshot["messages"]["flink_actors.ErrorEvent"]["1"]["fields"]
    fields["message"]["schema"] = {"type": "integer"}  # as if the class had changed the type
    fields["gone"] = {"accepts": ["gone"], "required": True, "schema": {"type": "string"}}
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snapshot))
    result = _run("-m", "protocols.schema_check", "--snapshot", str(path))
    assert result.returncode == 1
    assert "field 'message': type changed" in result.stdout
    assert "field 'gone' was removed" in result.stdout
    refused = _run("-m", "protocols.schema_check", "--snapshot", str(path), "--update")
    assert refused.returncode == 1 and "refusing" in refused.stderr


def test_schema_check_records_new_types_with_update(tmp_path: Path) -> None:
    module = tmp_path / "shop_messages.py"
    module.write_text(
        "from pydantic import BaseModel\nfrom protocols import message\n\n"
        "@message('shop.Order')\nclass Order(BaseModel):\n    order_id: str\n"
    )
    path = tmp_path / "snap.json"
    path.write_text((ROOT / "protocols" / "schema_snapshot.json").read_text())
    env_args = ("-m", "protocols.schema_check", "--snapshot", str(path), "--module")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); " + (
        "from protocols.schema_check import main; sys.exit(main(sys.argv[1:]))"
    )
    first = _run("-c", code, *env_args[2:], "shop_messages")
    assert first.returncode == 0 and "'shop.Order' version 1 is not recorded" in first.stdout
    assert _run("-c", code, *env_args[2:], "shop_messages", "--update").returncode == 0
    assert "shop.Order" in json.loads(path.read_text())["messages"]


def test_open_enum_reads_unknown_values() -> None:
    from protocols import OpenStrEnum

    class Mood(OpenStrEnum):
        HAPPY = "happy"
        UNKNOWN = "unknown"

    class Person(BaseModel):
        mood: Mood

    assert Person.model_validate({"mood": "elated"}).mood is Mood.UNKNOWN
    assert Person.model_validate({"mood": "happy"}).mood is Mood.HAPPY
