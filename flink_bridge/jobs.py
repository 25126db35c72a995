"""Run, stop and restore agent jobs: what `flink-actors run` and `flink-actors stop` do.

Two places a job file can run:

- the local mini-cluster (default): the app runs as a subprocess of this Python, and
  `create_environment` starts a Flink mini-cluster inside it;
- the standalone cluster of `flink-actors up --flink-cluster` (``--remote``): the app is
  submitted with PyFlink's bundled ``flink run -py app.py -m 127.0.0.1:<rest port>``.

Either way the app gets the Ray head's env (`runtime.ray_client_env` reads it from the
environment) and a PYTHONPATH holding the project root, the app's folder and the current folder:
in thread mode Python runs inside the TaskManager's JVM, which does not see this virtualenv's
editable install, so the standalone cluster is told the same path with ``python.pythonpath``.

Savepoints go through the cluster's REST API (``POST /jobs/:id/stop``, then polling the
trigger). A restore is the Flink setting ``execution.state-recovery.path``: ``flink run -s`` on
the cluster, and ``FLINK_ACTORS_RESTORE_FROM`` in the environment of a local run, which an app
turns into that setting with `restore_settings` (see docs/running.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from flink_bridge.stack.config import StackConfig
from protocols.errors import UserError

__all__ = [
    "RESTORE_ENV",
    "RESTORE_SETTING",
    "JobRun",
    "cancel_job",
    "check_app",
    "check_savepoint",
    "cluster_running",
    "job_environ",
    "job_state",
    "list_jobs",
    "local_command",
    "parse_job_id",
    "remote_command",
    "require_cluster",
    "restore_settings",
    "run_job",
    "savepoint_uri",
    "stop_job",
    "wait_for_state",
]

RESTORE_ENV = "FLINK_ACTORS_RESTORE_FROM"
"""Environment variable naming the savepoint a local run restores from."""
RESTORE_SETTING = "execution.state-recovery.path"
"""The Flink setting that restores a job from a savepoint or retained checkpoint."""

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_JOB_ID = re.compile(r"JobID\s+([0-9a-f]{32})")
_RAY_VARS = (
    "RAY_ADDRESS",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_AUTH_TOKEN",
)


@dataclass(frozen=True)
class JobRun:
    """What `run_job` started: the exit code (None while detached), the cluster's job id when
    one was printed, the local pid of a detached local run and where its output goes."""

    returncode: int | None
    job_id: str | None = None
    pid: int | None = None
    log_path: Path | None = None


# -- checks ---------------------------------------------------------------------------------


def check_app(app: Path) -> Path:
    """The job file as an absolute path; UserError when it is missing or not a Python file."""
    path = app.expanduser()
    if not path.is_file():
        raise UserError(
            f"job file {str(app)!r} does not exist; pass the path of a Python file that builds "
            "and executes a Flink job, e.g. `flink-actors run app.py`"
        )
    if path.suffix != ".py":
        raise UserError(f"job file {str(app)!r} is not a .py file; pass a Python job file")
    return path.resolve()


def savepoint_uri(path: str | Path) -> str:
    """A savepoint folder as a URI Flink accepts (``file:///...`` for local paths)."""
    text = str(path)
    if "://" in text:
        return text
    return Path(text).expanduser().resolve().as_uri()


def check_savepoint(path: str | Path) -> str:
    """The savepoint's URI; UserError when a local savepoint (or its ``_metadata``) is missing.

    Remote file systems (``s3://``, ``hdfs://``) are passed through unchecked.
    """
    text = str(path)
    if "://" in text and not text.startswith("file:"):
        return text
    local = Path(urlparse(text).path if text.startswith("file:") else text).expanduser()
    if not local.exists():
        raise UserError(
            f"savepoint {text!r} does not exist; pass the path that "
            "`flink-actors stop JOB_ID --savepoint` printed"
        )
    if local.is_dir() and not (local / "_metadata").is_file():
        raise UserError(
            f"savepoint {text!r} has no _metadata file, so it is not a complete savepoint; "
            "pass the folder `flink-actors stop JOB_ID --savepoint` printed (savepoint-...)"
        )
    return savepoint_uri(local)


def restore_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Flink settings that restore the job from ``$FLINK_ACTORS_RESTORE_FROM`` (set by
    ``flink-actors run --from-savepoint``); empty when it is not set.

    Pass them to the job's environment: ``RuntimeConfig(extra=restore_settings())``.
    """
    env = os.environ if environ is None else environ
    path = env.get(RESTORE_ENV, "")
    return {RESTORE_SETTING: path} if path else {}


# -- environment of the job ------------------------------------------------------------------


def python_path(app: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """Folders the job's Python (driver and workers) must import from: the app's folder, the
    current folder, the project root, then whatever PYTHONPATH already holds."""
    env = os.environ if environ is None else environ
    paths: list[str] = []
    for entry in (
        str(app.parent),
        os.getcwd(),
        str(_PROJECT_ROOT),
        *env.get("PYTHONPATH", "").split(os.pathsep),
    ):
        if entry and entry not in paths:
            paths.append(entry)
    return paths


def _ray_env(config: StackConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The Ray head's client env: from `environ` when RAY_ADDRESS is there, else from the stack
    `flink-actors up` started (if its head runs); empty when neither (effects="in-process"
    jobs need none, and a Ray job then fails with the runtime's own message)."""
    if environ.get("RAY_ADDRESS"):
        return {k: environ[k] for k in _RAY_VARS if k in environ}
    from flink_bridge.stack.health import Health
    from flink_bridge.stack.ray_head import connect_env, status_ray

    if status_ray(config).health == Health.UP:
        return connect_env(config)
    return {}


def job_environ(
    config: StackConfig,
    app: Path,
    *,
    restore_from: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a job runs with: ours, plus PYTHONPATH, the Ray env and the restore."""
    base = dict(os.environ if environ is None else environ)
    env = {**base, **_ray_env(config, base)}
    env["PYTHONPATH"] = os.pathsep.join(python_path(app, base))
    env.setdefault("PYTHONUNBUFFERED", "1")
    if restore_from:
        env[RESTORE_ENV] = restore_from
    else:
        env.pop(RESTORE_ENV, None)
    return env


# -- commands ----------------------------------------------------------------------------------


def local_command(app: Path, args: Sequence[str] = ()) -> list[str]:
    """``python app.py ARGS``: the app runs its own mini-cluster."""
    return [sys.executable, str(app), *args]


def _flink_cli() -> Path:
    from flink_bridge.stack.flink_cluster import flink_home

    return flink_home() / "bin" / "flink"


def remote_command(
    config: StackConfig,
    app: Path,
    args: Sequence[str] = (),
    *,
    restore_from: str | None = None,
    detached: bool = False,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """``flink run`` of PyFlink's distribution, aimed at the standalone cluster's REST port."""
    # The TaskManager's embedded Python sees only this path (not our venv's site-packages,
    # where pemja and the dependencies live), so it gets our whole import path.
    paths = python_path(app, environ)
    paths += [p for p in sys.path if p and Path(p).exists() and p not in paths]
    cmd = ["bash", str(_flink_cli()), "run", "-m", config.flink_rest_address]
    if detached:
        cmd.append("-d")
    if restore_from:
        cmd += ["-s", restore_from]
    cmd += [
        f"-Dpython.pythonpath={os.pathsep.join(paths)}",
        f"-Dpython.executable={sys.executable}",
        f"-Dpython.client.executable={sys.executable}",
        "-pyexec",
        sys.executable,
        "-pyclientexec",
        sys.executable,
        "-py",
        str(app),
        *args,
    ]
    return cmd


def _cli_environ(config: StackConfig, env: dict[str, str]) -> dict[str, str]:
    """What Flink's shell scripts need: Java, the Flink home, and the cluster's conf folder."""
    from flink_bridge.stack.flink_cluster import flink_conf_dir, flink_home
    from flink_bridge.stack.java import find_java

    out = dict(env)
    out["JAVA_HOME"] = str(find_java(env).resolve().parent.parent)
    out["FLINK_HOME"] = str(flink_home())
    conf = flink_conf_dir(config)
    if (conf / "config.yaml").is_file():
        out["FLINK_CONF_DIR"] = str(conf)
    out.setdefault("FLINK_LOG_DIR", str(config.state_dir / "flink" / "log"))
    return out


def parse_job_id(text: str) -> str | None:
    """The job id in ``flink run``'s "Job has been submitted with JobID <id>" line."""
    found = _JOB_ID.search(text)
    return found.group(1) if found else None


def run_job(
    config: StackConfig,
    app: Path,
    args: Sequence[str] = (),
    *,
    remote: bool = False,
    restore_from: str | None = None,
    detached: bool = False,
    timeout_s: float | None = None,
    echo: bool = True,
) -> JobRun:
    """Run `app` locally or on the standalone cluster (see the module docstring).

    Attached runs return when the job (or, for a detached remote run, the submission) ends;
    a detached local run returns at once with the pid and log file of the app's process.
    """
    app = check_app(app)
    restore = check_savepoint(restore_from) if restore_from else None
    if remote:
        require_cluster(config)
        env = _cli_environ(config, job_environ(config, app, restore_from=None))
        cmd = remote_command(config, app, args, restore_from=restore, detached=detached)
    else:
        env = job_environ(config, app, restore_from=restore)
        cmd = local_command(app, args)
        if detached:
            log_dir = config.state_dir / "jobs"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / f"{app.stem}-{int(time.time() * 1000)}.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(  # noqa: S603 - our own interpreter and the user's app
                    cmd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            return JobRun(returncode=None, pid=proc.pid, log_path=log_path)
    return _run_attached(cmd, env, timeout_s=timeout_s, echo=echo)


def _run_attached(
    cmd: list[str], env: dict[str, str], *, timeout_s: float | None, echo: bool
) -> JobRun:
    """Run `cmd`, passing its output through line by line, and pick up the job id."""
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter / Flink's script
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    job_id: str | None = None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
            job_id = job_id or parse_job_id(line)
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(cmd, timeout_s or 0.0)
        returncode = proc.wait(
            timeout=None if deadline is None else max(1.0, deadline - time.monotonic())
        )
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    return JobRun(returncode=returncode, job_id=job_id)


# -- the standalone cluster's REST API ---------------------------------------------------------


def _rest(
    config: StackConfig,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    *,
    timeout_s: float = 10.0,
) -> Any:
    url = f"http://{config.flink_rest_address}{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (loopback)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        if exc.code == 404 and path.startswith("/jobs/"):
            job = path.split("/")[2]
            raise UserError(
                f"the Flink cluster at {config.flink_rest_address!r} has no job {job!r}; "
                "list the jobs with `flink-actors jobs`"
            ) from None
        raise UserError(
            f"Flink REST {method} {path} answered {exc.code}: {detail}; "
            f"see the cluster's logs in {str(config.state_dir / 'flink' / 'log')!r}"
        ) from None
    except OSError as exc:
        raise UserError(
            f"no Flink cluster answers at http://{config.flink_rest_address} ({exc}); start one "
            "with `flink-actors up --flink-cluster`"
        ) from None
    return json.loads(raw) if raw else {}


def cluster_running(config: StackConfig) -> bool:
    """True when the standalone cluster's REST endpoint answers with a TaskManager."""
    from flink_bridge.stack.flink_cluster import rest_overview

    overview = rest_overview(config)
    return overview is not None and int(overview.get("taskmanagers", 0) or 0) >= 1  # type: ignore[call-overload]


def require_cluster(config: StackConfig) -> None:
    """UserError with the fix when no standalone cluster runs for this config."""
    if not cluster_running(config):
        raise UserError(
            f"no Flink cluster is running at http://{config.flink_rest_address}; start one with "
            "`flink-actors up --flink-cluster` (or leave out --remote to use the local "
            "mini-cluster)"
        )


def list_jobs(config: StackConfig) -> list[dict[str, Any]]:
    """The cluster's jobs (id, name, state), newest first."""
    require_cluster(config)
    data = _rest(config, "GET", "/jobs/overview")
    jobs = [
        {"id": j["jid"], "name": j["name"], "state": j["state"], "start_time": j["start-time"]}
        for j in data.get("jobs", [])
    ]
    return sorted(jobs, key=lambda j: -int(j["start_time"]))


def job_state(config: StackConfig, job_id: str) -> str:
    """The job's state (RUNNING, FINISHED, CANCELED, FAILED, ...)."""
    return str(_rest(config, "GET", f"/jobs/{job_id}").get("state"))


def wait_for_state(
    config: StackConfig, job_id: str, states: Sequence[str], *, timeout_s: float = 120.0
) -> str:
    """Poll until the job reaches one of `states`; UserError on timeout."""
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        state = job_state(config, job_id)
        if state in states:
            return state
        time.sleep(0.5)
    raise UserError(
        f"job {job_id!r} is {state!r}, not one of {list(states)!r}, after {timeout_s:.0f}s; "
        "see the cluster's logs"
    )


def stop_job(
    config: StackConfig,
    job_id: str,
    savepoint_dir: str | Path,
    *,
    drain: bool = False,
    timeout_s: float = 300.0,
) -> str:
    """Stop `job_id` with a savepoint in `savepoint_dir`; return the savepoint's location.

    `drain=True` ends the input first (a final watermark), for a job that will not resume.
    """
    require_cluster(config)
    target = savepoint_uri(savepoint_dir)
    if target.startswith("file:"):
        Path(target.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    trigger = _rest(
        config,
        "POST",
        f"/jobs/{job_id}/stop",
        {"targetDirectory": target, "drain": drain, "formatType": "CANONICAL"},
    )
    request_id = trigger.get("request-id")
    if not request_id:
        raise UserError(f"the cluster did not accept the stop of job {job_id!r}: {trigger!r}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = _rest(config, "GET", f"/jobs/{job_id}/savepoints/{request_id}")
        if info.get("status", {}).get("id") == "COMPLETED":
            operation = info.get("operation") or {}
            if "location" in operation:
                return str(operation["location"])
            cause = operation.get("failure-cause", {})
            message = cause.get("stacktrace", str(cause)).splitlines()[0] if cause else "?"
            raise UserError(
                f"the savepoint of job {job_id!r} failed: {message}; the job keeps running, "
                "see the cluster's logs"
            )
        time.sleep(0.5)
    raise UserError(
        f"the savepoint of job {job_id!r} did not complete in {timeout_s:.0f}s; the job may "
        "still be running: check `flink-actors jobs`"
    )


def cancel_job(config: StackConfig, job_id: str, *, timeout_s: float = 60.0) -> str:
    """Cancel `job_id` without a savepoint; return its final state."""
    require_cluster(config)
    _rest(config, "PATCH", f"/jobs/{job_id}?mode=cancel")
    return wait_for_state(config, job_id, ("CANCELED", "FINISHED", "FAILED"), timeout_s=timeout_s)
