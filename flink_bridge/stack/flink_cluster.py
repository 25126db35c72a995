"""An optional standalone Flink cluster (one JobManager, one TaskManager) for `run --remote`.

By default jobs run on the local mini-cluster inside the PyFlink client and nothing is
started. With `up --flink-cluster` we start PyFlink's bundled ``jobmanager.sh`` and
``taskmanager.sh`` in ``start-foreground`` mode (the script execs the JVM, so the pid we record
is the JVM's), with a generated ``config.yaml`` that binds every endpoint to 127.0.0.1 and
with pid, log and conf folders under the state dir instead of ``/tmp`` and the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

from flink_bridge.stack.config import StackConfig
from flink_bridge.stack.errors import StackStartError
from flink_bridge.stack.health import (
    LOOPBACK,
    ComponentStatus,
    Health,
    check_port_free,
    wait_until,
)
from flink_bridge.stack.java import find_java
from flink_bridge.stack.procs import PidFile, is_alive, start_process, stop_process

__all__ = [
    "flink_conf_dir",
    "flink_dir",
    "flink_home",
    "rest_overview",
    "start_flink_cluster",
    "status_flink_cluster",
    "stop_flink_cluster",
]

NAME = "flink cluster"
_ROLES = ("jobmanager", "taskmanager")


def flink_home() -> Path:
    """The Flink distribution inside the installed `apache-flink` wheel (``pyflink/``)."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def flink_dir(config: StackConfig) -> Path:
    """Folder with the cluster's conf, logs and the scripts' own pid files."""
    return config.state_dir / "flink"


def flink_conf_dir(config: StackConfig) -> Path:
    """Generated FLINK_CONF_DIR (``config.yaml`` + the wheel's log4j files)."""
    return flink_dir(config) / "conf"


def _pid_file(config: StackConfig, role: str) -> PidFile:
    return PidFile(config.state_dir / "run" / f"flink-{role}.pid")


def _config_yaml(config: StackConfig, java_opts: str) -> str:
    settings: dict[str, object] = {
        "env.java.opts.all": java_opts,
        "jobmanager.rpc.address": LOOPBACK,
        "jobmanager.rpc.port": config.flink_rpc_port,
        "jobmanager.bind-host": LOOPBACK,
        "jobmanager.memory.process.size": "1024m",
        "jobmanager.execution.failover-strategy": "region",
        "taskmanager.bind-host": LOOPBACK,
        "taskmanager.host": LOOPBACK,
        "taskmanager.numberOfTaskSlots": config.flink_task_slots,
        "taskmanager.memory.process.size": "1728m",
        "parallelism.default": 1,
        "rest.address": LOOPBACK,
        "rest.bind-address": LOOPBACK,
        "rest.port": config.flink_rest_port,
        "blob.server.port": "0",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
    }
    # JSON scalars are valid YAML scalars; flat keys are accepted by Flink's config.yaml.
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())


def _wheel_java_opts(home: Path) -> str:
    """The wheel's `env.java.opts.all` (the --add-opens Flink needs on Java 17)."""
    text = (home / "conf" / "config.yaml").read_text(encoding="utf-8")
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("all:") and "--add-opens" in stripped:
            return stripped.removeprefix("all:").strip()
    return ""


def _write_conf(config: StackConfig, home: Path) -> Path:
    conf = flink_conf_dir(config)
    conf.mkdir(parents=True, exist_ok=True)
    for name in ("log4j-console.properties", "log4j.properties", "log4j-cli.properties"):
        src = home / "conf" / name
        if src.is_file():
            shutil.copyfile(src, conf / name)
    (conf / "config.yaml").write_text(
        _config_yaml(config, _wheel_java_opts(home)), encoding="utf-8"
    )
    return conf


def rest_overview(config: StackConfig, timeout_s: float = 2.0) -> dict[str, object] | None:
    """The cluster's ``/overview`` JSON, or None if the REST endpoint does not answer."""
    url = f"http://{config.flink_rest_address}/overview"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (loopback)
            data = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _ready(config: StackConfig) -> bool:
    overview = rest_overview(config)
    return overview is not None and int(overview.get("taskmanagers", 0)) >= 1  # type: ignore[call-overload]


def start_flink_cluster(config: StackConfig) -> ComponentStatus:
    """Start JobManager + TaskManager unless running; return once a TaskManager registered."""
    if all(_pid_file(config, role).live() is not None for role in _ROLES):
        return status_flink_cluster(config)
    stop_flink_cluster(config)  # half-started leftovers
    check_port_free(config.flink_rest_port, key="flink_rest_port", component="Flink REST")
    check_port_free(config.flink_rpc_port, key="flink_rpc_port", component="Flink JobManager RPC")
    java = find_java()
    home = flink_home()
    conf = _write_conf(config, home)
    base = flink_dir(config)
    env = dict(os.environ)
    env.update(
        {
            "FLINK_CONF_DIR": str(conf),
            "FLINK_LOG_DIR": str(base / "log"),
            "FLINK_PID_DIR": str(base / "pids"),
            "FLINK_HOME": str(home),
            "JAVA_HOME": str(java.resolve().parent.parent),
        }
    )
    procs = {}
    for role in _ROLES:
        script = home / "bin" / f"{role}.sh"
        proc = start_process(
            ["bash", str(script), "start-foreground"],
            log_path=base / "log" / f"{role}.out",
            env=env,
        )
        procs[role] = proc
        _pid_file(config, role).write(proc.pid, f"flink-{role}")
    up = wait_until(
        lambda: _ready(config),
        timeout_s=config.startup_timeout_s,
        abort=lambda: any(p.poll() is not None for p in procs.values()),
    )
    if not up:
        dead = [role for role, p in procs.items() if p.poll() is not None]
        stop_flink_cluster(config)
        problem = (
            f"{dead[0]} exited during start"
            if dead
            else f"did not report a TaskManager on {config.flink_rest_address} "
            f"within {config.startup_timeout_s:.0f}s"
        )
        raise StackStartError("Flink cluster", problem, base / "log")
    return ComponentStatus(
        name=NAME,
        health=Health.UP,
        address=f"http://{config.flink_rest_address}",
        pid=procs["jobmanager"].pid,
        detail=f"taskmanager pid {procs['taskmanager'].pid}",
    )


def stop_flink_cluster(config: StackConfig) -> bool:
    """Stop the TaskManager, then the JobManager; False if neither was running."""
    stopped = False
    for role in reversed(_ROLES):
        pid_file = _pid_file(config, role)
        record = pid_file.live()
        if record is not None:
            stop_process(record, timeout_s=config.stop_timeout_s)
            stopped = True
        pid_file.remove()
    return stopped


def status_flink_cluster(config: StackConfig) -> ComponentStatus:
    """Pids and health of the standalone cluster (DOWN means: jobs use the mini-cluster)."""
    address = f"http://{config.flink_rest_address}"
    stale = [role for role in _ROLES if _pid_file(config, role).is_stale()]
    for role in stale:
        _pid_file(config, role).remove()
    records = {role: _pid_file(config, role).read() for role in _ROLES}
    live = {
        role: r for role, r in records.items() if r is not None and is_alive(r.pid, r.create_time)
    }
    if not live:
        if stale:
            return ComponentStatus(
                name=NAME,
                health=Health.STALE,
                address=address,
                detail=f"removed stale pid files of {', '.join(stale)}",
            )
        return ComponentStatus(
            name=NAME, health=Health.DOWN, address=address, detail="jobs use the local mini-cluster"
        )
    overview = rest_overview(config)
    ready = overview is not None and len(live) == len(_ROLES) and _ready(config)
    jm = live.get("jobmanager")
    tm = live.get("taskmanager")
    return ComponentStatus(
        name=NAME,
        health=Health.UP if ready else Health.STARTING,
        address=address,
        pid=jm.pid if jm is not None else None,
        detail=f"taskmanager pid {tm.pid}" if tm is not None else "taskmanager not running",
    )
