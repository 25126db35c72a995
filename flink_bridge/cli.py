"""The `flink-actors` command: start, stop and inspect the local stack.

Why typer + rich: one entry point with typed flags whose names match the config keys
(``--kafka-port`` <-> ``kafka_port``), so every error that names a key also names its flag.
User errors print as one red line (exit code 1), never as a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flink_bridge import jobs as jobs_mod
from flink_bridge.stack import jars as jars_mod
from flink_bridge.stack import stack as stack_mod
from flink_bridge.stack.config import StackConfig, load_config
from flink_bridge.stack.health import ComponentStatus, Health
from protocols.errors import FlinkActorsError

__all__ = ["app", "main"]

app = typer.Typer(
    name="flink-actors",
    help="Actor-model multi-agent runtime on Flink: manage the local Kafka + Ray + Flink stack "
    "and run agent jobs on it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_out = Console()
_err = Console(stderr=True)

ProjectDir = Annotated[
    Path | None,
    typer.Option(help="Project folder holding flink-actors.toml (default: current folder)."),
]
StateDir = Annotated[Path | None, typer.Option(help="State folder (config key state_dir).")]
KafkaPort = Annotated[int | None, typer.Option(help="Kafka listener port (kafka_port).")]
KafkaControllerPort = Annotated[
    int | None, typer.Option(help="Kafka KRaft controller port (kafka_controller_port).")
]
RayPort = Annotated[int | None, typer.Option(help="Ray GCS port (ray_port).")]
RayClientPort = Annotated[
    int | None, typer.Option(help="Ray client server port (ray_client_port).")
]
RayNumCpus = Annotated[int | None, typer.Option(help="CPUs offered by Ray (ray_num_cpus).")]
FlinkRestPort = Annotated[
    int | None, typer.Option(help="Standalone Flink REST port (flink_rest_port).")
]
FlinkRpcPort = Annotated[
    int | None, typer.Option(help="Standalone Flink JobManager RPC port (flink_rpc_port).")
]
ModelPort = Annotated[int | None, typer.Option(help="Local model server port (model_port).")]


def _config(project_dir: Path | None, **flags: Any) -> StackConfig:
    return load_config(project_dir, overrides=flags)


def _fail(exc: BaseException) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


class _RichWarnings(logging.Handler):
    """Show the stack's warnings (e.g. a cleaned stale pid file) as one yellow line each."""

    def emit(self, record: logging.LogRecord) -> None:
        _err.print(f"[yellow]warning:[/] {record.getMessage()}", highlight=False, soft_wrap=True)


def _install_log_handler() -> None:
    logger = logging.getLogger("flink_actors")
    if not any(isinstance(h, _RichWarnings) for h in logger.handlers):
        handler = _RichWarnings(level=logging.WARNING)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


_STYLE = {
    Health.UP: "green",
    Health.STARTING: "yellow",
    Health.DOWN: "dim",
    Health.STALE: "yellow",
    Health.NOT_INSTALLED: "dim",
}


def _print_statuses(statuses: list[ComponentStatus], *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("component", "health", "address", "pid", "detail"):
        table.add_column(column)
    for st in statuses:
        style = _STYLE[st.health]
        table.add_row(
            st.name,
            f"[{style}]{st.health.value}[/]",
            st.address or "-",
            str(st.pid) if st.pid is not None else "-",
            st.detail,
        )
    _out.print(table)


@app.command()
def up(
    flink_cluster: Annotated[
        bool, typer.Option("--flink-cluster", help="Also start a standalone Flink cluster.")
    ] = False,
    model: Annotated[
        bool, typer.Option("--model", help="Also start the local model server.")
    ] = False,
    fetch_jars: Annotated[
        bool, typer.Option(help="Fetch missing jars with mvn before starting.")
    ] = True,
    project_dir: ProjectDir = None,
    state_dir: StateDir = None,
    kafka_port: KafkaPort = None,
    kafka_controller_port: KafkaControllerPort = None,
    ray_port: RayPort = None,
    ray_client_port: RayClientPort = None,
    ray_num_cpus: RayNumCpus = None,
    flink_rest_port: FlinkRestPort = None,
    flink_rpc_port: FlinkRpcPort = None,
    model_port: ModelPort = None,
) -> None:
    """Start Kafka (KRaft) and a Ray head on 127.0.0.1; returns once they answer."""
    _install_log_handler()
    began = time.monotonic()
    try:
        config = _config(
            project_dir,
            state_dir=state_dir,
            kafka_port=kafka_port,
            kafka_controller_port=kafka_controller_port,
            ray_port=ray_port,
            ray_client_port=ray_client_port,
            ray_num_cpus=ray_num_cpus,
            flink_rest_port=flink_rest_port,
            flink_rpc_port=flink_rpc_port,
            model_port=model_port,
        )
        statuses = stack_mod.up(
            config, flink_cluster_on=flink_cluster, model=model, fetch_jars=fetch_jars
        )
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    _print_statuses(statuses, title=f"stack up in {time.monotonic() - began:.1f}s")


@app.command()
def down(
    project_dir: ProjectDir = None,
    state_dir: StateDir = None,
) -> None:
    """Stop everything `up` started for this state folder (SIGTERM, then SIGKILL)."""
    _install_log_handler()
    try:
        config = _config(project_dir, state_dir=state_dir)
        results = stack_mod.down(config)
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    for result in results:
        word = "[green]stopped[/]" if result.was_running else "[dim]not running[/]"
        _out.print(f"{result.name}: {word}")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    project_dir: ProjectDir = None,
    state_dir: StateDir = None,
    kafka_port: KafkaPort = None,
    ray_port: RayPort = None,
    flink_rest_port: FlinkRestPort = None,
    model_port: ModelPort = None,
) -> None:
    """Show each component with its address, pid and health."""
    _install_log_handler()
    try:
        config = _config(
            project_dir,
            state_dir=state_dir,
            kafka_port=kafka_port,
            ray_port=ray_port,
            flink_rest_port=flink_rest_port,
            model_port=model_port,
        )
        statuses = stack_mod.status(config)
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    if as_json:
        rows = [{**asdict(st), "health": st.health.value} for st in statuses]
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    _print_statuses(statuses, title=f"flink-actors stack ({config.state_dir})")


@app.command()
def demo(
    project_dir: ProjectDir = None,
    keep_stack: Annotated[
        bool, typer.Option("--keep-stack", help="Leave the stack running afterwards.")
    ] = False,
    app_name: Annotated[
        str,
        typer.Option(
            "--app",
            help="fraud (transactions -> fraud analyst -> alerts), triage (router + MCP "
            "specialists over Kafka) or support (per-customer ReAct desk).",
        ),
    ] = "fraud",
) -> None:
    """Run a sample application on the embedded stack and print its committed results.

    Uses the local model unless FLINK_ACTORS_MODEL_URL names an OpenAI-compatible endpoint.
    """
    import os

    from flink_bridge.demo import run_app_demo

    _install_log_handler()
    began = time.monotonic()
    try:
        config = _config(project_dir)
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    was_up = {s.name for s in stack_mod.status(config) if s.health.value == "up"}
    try:
        want_model = not os.environ.get("FLINK_ACTORS_MODEL_URL")
        statuses = stack_mod.up(config, model=want_model)
        _print_statuses(statuses, title=f"stack up in {time.monotonic() - began:.1f}s")
        answered = run_app_demo(app_name, config, console=_out)
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    finally:
        if not keep_stack and not {"kafka", "ray"} <= was_up:
            stack_mod.down(config)
    _out.print(f"demo finished in {time.monotonic() - began:.1f}s")
    if answered == 0:
        raise typer.Exit(1)


@app.command("jars")
def fetch_jars_command() -> None:
    """Fetch the Flink Kafka connector and Kafka broker jars (a no-op when present)."""
    _install_log_handler()
    try:
        began = time.monotonic()
        folders = jars_mod.ensure_jars()
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    for name, folder in folders.items():
        count = len(list(folder.glob("*.jar")))
        _out.print(f"{name}: {count} jars in {folder}")
    _out.print(f"done in {time.monotonic() - began:.1f}s")


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run_command(
    ctx: typer.Context,
    job_file: Annotated[
        Path, typer.Argument(help="The Python job file (builds and executes a job).")
    ],
    remote: Annotated[
        bool,
        typer.Option(
            "--remote", help="Submit to the cluster of `up --flink-cluster` (flink run -py)."
        ),
    ] = False,
    from_savepoint: Annotated[
        str | None,
        typer.Option("--from-savepoint", help="Restore the job's state from this savepoint."),
    ] = None,
    detached: Annotated[
        bool, typer.Option("--detached", "-d", help="Return once the job is started.")
    ] = False,
    project_dir: ProjectDir = None,
    state_dir: StateDir = None,
    ray_port: RayPort = None,
    flink_rest_port: FlinkRestPort = None,
) -> None:
    """Run JOB_FILE on the local mini-cluster, or with --remote on the standalone cluster.

    Arguments after the job file (or after `--`) are passed to it.
    """
    _install_log_handler()
    try:
        config = _config(
            project_dir,
            state_dir=state_dir,
            ray_port=ray_port,
            flink_rest_port=flink_rest_port,
        )
        result = jobs_mod.run_job(
            config,
            job_file,
            list(ctx.args),
            remote=remote,
            restore_from=from_savepoint,
            detached=detached,
        )
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    if result.pid is not None:
        _out.print(f"job started: pid {result.pid}, output in {result.log_path}")
        return
    if result.job_id is not None:
        sys.stdout.write(f"job id: {result.job_id}\n")
    if result.returncode:
        where = "on the cluster" if remote else "locally"
        _err.print(
            f"[bold red]error:[/] job file {str(job_file)!r} failed {where} with exit code "
            f"{result.returncode}; its output is above",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=result.returncode)


@app.command("stop")
def stop_command(
    job_id: Annotated[str, typer.Argument(help="The job's id (see `flink-actors jobs`).")],
    directory: Annotated[
        str | None,
        typer.Argument(help="Savepoint folder (default: <state_dir>/savepoints)."),
    ] = None,
    savepoint: Annotated[
        bool, typer.Option("--savepoint", help="Take a savepoint, then stop the job.")
    ] = False,
    drain: Annotated[
        bool, typer.Option("--drain", help="End the input first (the job will not resume).")
    ] = False,
    project_dir: ProjectDir = None,
    state_dir: StateDir = None,
    flink_rest_port: FlinkRestPort = None,
) -> None:
    """Stop a job on the standalone cluster: with --savepoint [DIR] keep its state for
    `run --from-savepoint`, else cancel it."""
    _install_log_handler()
    try:
        config = _config(project_dir, state_dir=state_dir, flink_rest_port=flink_rest_port)
        if savepoint or directory is not None:
            target = directory or str(config.state_dir / "savepoints")
            location = jobs_mod.stop_job(config, job_id, target, drain=drain)
        else:
            state = jobs_mod.cancel_job(config, job_id)
            _out.print(f"job {job_id}: {state.lower()}")
            return
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    _out.print(f"job {job_id} stopped; savepoint:")
    sys.stdout.write(f"{location}\n")


@app.command("jobs")
def jobs_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    project_dir: ProjectDir = None,
    state_dir: StateDir = None,
    flink_rest_port: FlinkRestPort = None,
) -> None:
    """List the jobs of the standalone cluster."""
    _install_log_handler()
    try:
        config = _config(project_dir, state_dir=state_dir, flink_rest_port=flink_rest_port)
        rows = jobs_mod.list_jobs(config)
    except FlinkActorsError as exc:
        raise _fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title=f"jobs on http://{config.flink_rest_address}", title_justify="left")
    for column in ("id", "name", "state"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["id"], row["name"], row["state"])
    _out.print(table)


def main() -> None:
    """Entry point for ``python -m flink_bridge.cli``."""
    app()


if __name__ == "__main__":
    main()
