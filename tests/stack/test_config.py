"""Config layering (defaults < toml < env < flags) and one-line ConfigErrors naming key + fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flink_bridge.cli import app
from flink_bridge.stack.config import StackConfig, load_config
from protocols.errors import ConfigError


def test_defaults_are_loopback_ports_and_project_local_state(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.state_dir == (tmp_path / ".flink-actors").resolve()
    assert config.kafka_bootstrap == "127.0.0.1:9092"
    assert config.ray_address == "127.0.0.1:6379"
    assert config.flink_rest_address == "127.0.0.1:8081"


def test_layers_toml_then_env_then_flags(tmp_path: Path) -> None:
    (tmp_path / "flink-actors.toml").write_text(
        'kafka_port = 19092\nray_port = 16379\nstate_dir = "st"\nray_num_cpus = 3\n'
    )
    env = {"FLINK_ACTORS_RAY_PORT": "26379", "FLINK_ACTORS_KAFKA_HEAP_MB": "256"}
    config = load_config(tmp_path, environ=env, overrides={"ray_port": 36379, "kafka_port": None})
    assert config.kafka_port == 19092  # toml (flag None = not given)
    assert config.ray_port == 36379  # flag beats env beats toml
    assert config.kafka_heap_mb == 256  # env
    assert config.ray_num_cpus == 3
    assert config.state_dir == (tmp_path / "st").resolve()


def test_toml_stack_section_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "flink-actors.toml").write_text("[stack]\nkafka_port = 19093\n")
    assert load_config(tmp_path, environ={}).kafka_port == 19093


@pytest.mark.parametrize(
    ("env", "key", "fragment"),
    [
        ({"FLINK_ACTORS_KAFKA_PORT": "abc"}, "kafka_port", "'abc' is not a valid int"),
        ({"FLINK_ACTORS_KAFKA_PORT": "80"}, "kafka_port", "outside 1024..65535"),
        ({"FLINK_ACTORS_RAY_NUM_CPUS": "0"}, "ray_num_cpus", "not a positive integer"),
        ({"FLINK_ACTORS_STARTUP_TIMEOUT_S": "x"}, "startup_timeout_s", "not a valid float"),
        ({"FLINK_ACTORS_RAY_PORT": "9092"}, "ray_port", "also used by 'kafka_port'"),
    ],
)
def test_bad_env_value_names_key_and_fix(
    tmp_path: Path, env: dict[str, str], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ=env)
    message = str(info.value)
    assert info.value.key == key
    assert f"config {key!r}" in message
    assert fragment in message
    assert f"--{key.replace('_', '-')}" in message
    assert f"FLINK_ACTORS_{key.upper()}" in message
    assert "\n" not in message


def test_unknown_toml_key_lists_valid_keys(tmp_path: Path) -> None:
    (tmp_path / "flink-actors.toml").write_text("kafka_prot = 1\n")
    with pytest.raises(ConfigError, match=r"config 'kafka_prot': unknown key.*kafka_port"):
        load_config(tmp_path, environ={})


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "flink-actors.toml").write_text("kafka_port = = 1\n")
    with pytest.raises(ConfigError, match=r"cannot be parsed.*fix the syntax"):
        load_config(tmp_path, environ={})


def test_direct_construction_validates() -> None:
    with pytest.raises(ConfigError, match="kafka_controller_port"):
        StackConfig(kafka_port=20000, kafka_controller_port=20000)


def test_cli_bad_flag_value_is_one_line_with_the_flag(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["status", "--project-dir", str(tmp_path), "--kafka-port", "80"]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "config 'kafka_port'" in lines[0]
    assert "--kafka-port" in lines[0]


def test_kafka_cluster_ids_never_look_like_options() -> None:
    from flink_bridge.stack.kafka_broker import _cluster_id

    ids = [_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
