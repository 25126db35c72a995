"""Jar folders: connector and broker apart, each with its own kafka-clients; re-runs are no-ops."""

from __future__ import annotations

import shutil

import pytest

from flink_bridge.stack import jars

pytestmark = pytest.mark.integration  # the first run fetches from Maven Central


@pytest.fixture(scope="module", autouse=True)
def _fetched() -> None:
    jars.ensure_jars()


def test_connector_and_broker_jars_are_separate() -> None:
    connector = {p.name for p in jars.flink_connector_jars()}
    broker = {p.name for p in jars.kafka_broker_jars()}
    assert "flink-connector-kafka-5.0.0-2.2.jar" in connector
    assert any(n.startswith("kafka_2.13-4.") for n in broker)
    connector_clients = [n for n in connector if n.startswith("kafka-clients-")]
    broker_clients = [n for n in broker if n.startswith("kafka-clients-")]
    assert len(connector_clients) == 1 and len(broker_clients) == 1
    # The reason for two folders: the versions differ.
    assert connector_clients != broker_clients
    # The connector folder carries nothing of the broker (and no second logging binding).
    assert not any(n.startswith(("kafka_2.13", "kafka-server", "slf4j")) for n in connector)


def test_jar_urls_are_file_urls() -> None:
    urls = jars.flink_connector_jar_urls()
    assert urls and all(u.startswith("file:///") and u.endswith(".jar") for u in urls)


def test_second_ensure_is_a_noop_without_mvn(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which

    def no_mvn(name: str, *args: object, **kwargs: object) -> str | None:
        if name == "mvn":
            raise AssertionError("ensure_jars started mvn although the jars are current")
        return real_which(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil, "which", no_mvn)
    before = {p: p.stat().st_mtime_ns for p in jars.flink_connector_jars()}
    folders = jars.ensure_jars()
    assert set(folders) == {"Flink Kafka connector", "Kafka broker"}
    assert {p: p.stat().st_mtime_ns for p in jars.flink_connector_jars()} == before


def test_kafka_broker_classpath_is_its_own_folder() -> None:
    cp = jars.kafka_broker_classpath()
    assert cp.endswith("/lib/kafka/*")
