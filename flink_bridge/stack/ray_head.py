"""A local Ray head bound to 127.0.0.1, with token authentication and no dashboard.

Why these flags (all documented Ray options, Ray >= 2.52):

- ``--node-ip-address=127.0.0.1`` alone is not enough on Linux: Ray rewrites a loopback node
  IP to the machine's first non-loopback interface (``services.resolve_ip_for_localhost``)
  and binds its gRPC servers there. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is Ray's
  documented single-machine mode (the one it uses on macOS/Windows): the node IP stays the
  loopback address, and the GCS, raylet, agents and workers bind to it. Clients get the same
  variable from `connect_env`.
- ``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN_PATH=<state_dir>/ray/auth_token``: every RPC to
  the GCS/raylet needs the token. We keep a per-project token file instead of Ray's default
  ``~/.ray/auth_token`` so two projects (or test sessions) never share or overwrite one.
  Clients pass the same two env vars; `connect_env` returns them.
- ``--include-dashboard=false``; the helper ports Ray would otherwise fix (dashboard agent
  52365, client server 10001) are given explicitly so parallel heads do not collide.
- ``--block``: the `ray start` process stays in the foreground as the pid we record; on
  SIGTERM it stops the GCS, raylet and workers it started. We never call `ray stop`, which
  would stop every Ray cluster of the user on this machine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from flink_bridge.stack.config import StackConfig, load_config
from flink_bridge.stack.errors import StackStartError
from flink_bridge.stack.health import (
    LOOPBACK,
    ComponentStatus,
    Health,
    check_port_free,
    free_port,
    port_open,
    recorded_status,
    wait_until,
)
from flink_bridge.stack.procs import PidFile, start_process, stop_process, stop_recorded

__all__ = [
    "auth_token_path",
    "connect_env",
    "exit_report",
    "ray_dir",
    "ray_log",
    "ray_pid_file",
    "ray_temp_dir",
    "start_ray",
    "status_ray",
    "stop_ray",
]

NAME = "ray"

_log = logging.getLogger("flink_actors.flink_bridge.stack")
# How long a started head must stay up before `start_ray` returns (`ray start --block` checks
# its processes once a second), and how many starts a head that dies in that window gets.
_SETTLE_S = 3.0
_START_ATTEMPTS = 2

# Ray puts unix sockets under its temp dir; their paths must stay below 107 bytes.
_MAX_TEMP_DIR_LEN = 40


def ray_dir(config: StackConfig) -> Path:
    """Folder with the token and the `ray start` log."""
    return config.state_dir / "ray"


def ray_log(config: StackConfig) -> Path:
    """Output of the `ray start --block` process."""
    return ray_dir(config) / "ray-start.log"


def ray_pid_file(config: StackConfig) -> PidFile:
    """Pid file of the `ray start --block` process."""
    return PidFile(config.state_dir / "run" / "ray.pid")


def auth_token_path(config: StackConfig) -> Path:
    """The head's token file (created with mode 0600 on first start)."""
    return ray_dir(config) / "auth_token"


def ray_temp_dir(config: StackConfig) -> Path:
    """Ray's session/temp folder: under the state dir when its path is short enough."""
    preferred = ray_dir(config) / "tmp"
    if len(str(preferred)) <= _MAX_TEMP_DIR_LEN:
        return preferred
    digest = hashlib.sha256(str(config.state_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"fa-ray-{digest}"


def connect_env(config: StackConfig | None = None) -> dict[str, str]:
    """Env vars a client process needs to reach this head with its token.

    `config` defaults to `load_config()` of the current folder (what `flink-actors up` used).

    Set them before ``ray.init`` in the client (e.g. ``os.environ.update(connect_env(cfg))``)
    and then call ``ray.init(address=env["RAY_ADDRESS"])`` (or plain ``ray.init()``, which
    reads RAY_ADDRESS).
    """
    if config is None:
        config = load_config()
    return {
        "RAY_ADDRESS": config.ray_address,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(auth_token_path(config)),
    }


def _ensure_token(config: StackConfig) -> Path:
    path = auth_token_path(config)
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32))
    return path


def _ray_executable() -> str:
    """The `ray` script next to this interpreter (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.is_file() else "ray"


def start_ray(config: StackConfig) -> ComponentStatus:
    """Start the Ray head unless it runs; return once its GCS port accepts connections and the
    head has stayed up for a short settling window.

    `ray start --block` kills the whole head when any of its processes exits unexpectedly (the
    dashboard agent or runtime-env agent failing to bind a port it was handed, say), which can
    happen just after the GCS port opens. A head that dies in the window is started once more,
    with fresh helper ports; a second death is an error that quotes Ray's own exit report.
    """
    pid_file = ray_pid_file(config)
    if pid_file.live() is not None:
        return status_ray(config)
    check_port_free(config.ray_port, key="ray_port", component="Ray GCS")
    check_port_free(config.ray_client_port, key="ray_client_port", component="Ray client server")
    _ensure_token(config)
    for attempt in range(1, _START_ATTEMPTS + 1):
        proc = _launch_head(config, pid_file)
        if _stays_up(proc):
            return ComponentStatus(
                name=NAME, health=Health.UP, address=config.ray_address, pid=proc.pid
            )
        pid_file.remove()
        report = exit_report(config)
        if attempt == _START_ATTEMPTS:
            problem = f"exited with code {proc.returncode} during or right after start: {report}"
            raise StackStartError("Ray head", problem, ray_log(config))
        _log.warning("Ray head exited right after start (%s); starting it again", report)
    raise AssertionError("unreachable")


def _stays_up(proc: subprocess.Popen[bytes]) -> bool:
    """True when `proc` is still running at the end of the settling window."""
    exited = wait_until(lambda: proc.poll() is not None, timeout_s=_SETTLE_S, interval_s=0.25)
    return not exited


def _launch_head(config: StackConfig, pid_file: PidFile) -> subprocess.Popen[bytes]:
    """One `ray start --head --block`, waited for until its GCS port and raylet are up."""
    temp_dir = ray_temp_dir(config)
    temp_dir.mkdir(parents=True, exist_ok=True)
    # Written by `ray start` once the head is up; remove the last run's copy first.
    (temp_dir / "ray_current_cluster").unlink(missing_ok=True)

    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)  # the token file is the one source
    env.update(connect_env(config))
    env.pop("RAY_ADDRESS")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # No Serve proxies to drain on a local head: stop at once on SIGTERM (default waits 30 s).
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    argv = [
        _ray_executable(),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={LOOPBACK}",
        f"--port={config.ray_port}",
        f"--ray-client-server-port={config.ray_client_port}",
        f"--num-cpus={config.ray_num_cpus}",
        f"--object-store-memory={config.ray_object_store_mb * 1024 * 1024}",
        "--num-gpus=0",
        "--include-dashboard=false",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    proc = start_process(argv, log_path=ray_log(config), env=env)
    record = pid_file.write(proc.pid, NAME)
    up = wait_until(
        lambda: port_open(config.ray_port) and _raylet_ready(temp_dir),
        timeout_s=config.startup_timeout_s,
        abort=lambda: proc.poll() is not None,
    )
    if up or proc.poll() is not None:
        return proc
    stop_process(record, timeout_s=config.stop_timeout_s)
    pid_file.remove()
    raise StackStartError(
        "Ray head",
        f"did not answer on {config.ray_address} within {config.startup_timeout_s:.0f}s",
        ray_log(config),
    )


def exit_report(config: StackConfig, max_lines: int = 12) -> str:
    """What `ray start --block` said about processes that exited, from the end of its log
    (Ray prints "Some Ray subprocesses exited unexpectedly" and each one's last log lines)."""
    try:
        lines = ray_log(config).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "no ray-start.log"
    marks = [i for i, line in enumerate(lines) if "exited unexpectedly" in line]
    tail = lines[marks[-1] :] if marks else lines[-max_lines:]
    return " | ".join(line.strip() for line in tail[:max_lines] if line.strip()) or "log empty"


def _raylet_ready(temp_dir: Path) -> bool:
    """`ray start` writes the cluster address file once the head's processes are up."""
    return (temp_dir / "ray_current_cluster").is_file()


def stop_ray(config: StackConfig) -> bool:
    """Stop the head and everything it started; False if it was not running."""
    return stop_recorded(ray_pid_file(config), timeout_s=config.stop_timeout_s)


def status_ray(config: StackConfig) -> ComponentStatus:
    """Pid and health of the head."""
    return recorded_status(
        NAME,
        ray_pid_file(config),
        address=config.ray_address,
        answers=lambda: port_open(config.ray_port),
        detail=f"token {str(auth_token_path(config))!r}",
    )
