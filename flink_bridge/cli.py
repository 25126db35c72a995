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

from flink_bridge.stack import jars as jars_mod
from flink_bridge.stack import stack as stack_mod
from flink_bridge.stack.config import StackConfig, load_config
from flink_bridge.stack.health import ComponentStatus, Health
from protocols.errors import FlinkActorsError

__all__ = ["app", "main"]

app = typer.Typer(
    name="flink-actors",
    help="Actor-model multi-agent runtime on Flink: manage the local Kafka + Ray + Flink stack.",
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
) -> None:
    """Run the support-desk demo: tickets -> per-customer ReAct agents -> answers, on Kafka.

    Uses the local model unless FLINK_ACTORS_MODEL_URL names an OpenAI-compatible endpoint.
    """
    import os

    from flink_bridge.demo import run_demo

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
        answered = run_demo(config, console=_out)
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


def main() -> None:
    """Entry point for ``python -m flink_bridge.cli``."""
    app()


if __name__ == "__main__":
    main()
