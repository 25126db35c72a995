"""The jars the stack needs, fetched once from Maven Central with mvn.

Two separate folders, because the Kafka broker and the Flink Kafka connector bring different
kafka-clients versions that must never share a classpath:

- ``jars/lib/flink/``: the Flink Kafka connector and its dependencies, for ``env.add_jars``;
- ``jars/lib/kafka/``: the Apache Kafka broker (KRaft) and its dependencies.

Each folder gets a ``.stamp`` with the hash of its pom once mvn succeeds; a later call with
the same pom is a no-op (no mvn start, which costs seconds here). A file lock keeps parallel
test sessions from running mvn into the same folder at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flink_bridge.stack.errors import JarsMissingError, MavenNotFoundError, StackStartError

__all__ = [
    "JarSet",
    "ensure_jars",
    "flink_connector_jar_urls",
    "flink_connector_jars",
    "jar_urls",
    "jars_root",
    "kafka_broker_classpath",
    "kafka_broker_jars",
]

_log = logging.getLogger("flink_actors.flink_bridge.stack")

_STAMP = ".stamp"


@dataclass(frozen=True)
class JarSet:
    """One pom and the folder its dependencies are copied into."""

    name: str
    pom: Path
    folder: Path

    def pom_digest(self) -> str:
        """Hash of the pom: the stamp is valid only for the pom it was made from."""
        return hashlib.sha256(self.pom.read_bytes()).hexdigest()

    def is_current(self) -> bool:
        """True when the folder holds jars fetched from the current pom."""
        stamp = self.folder / _STAMP
        try:
            recorded = stamp.read_text(encoding="utf-8").strip()
        except OSError:
            return False
        return recorded == self.pom_digest() and any(self.folder.glob("*.jar"))

    def jars(self) -> list[Path]:
        """The fetched jars, sorted; JarsMissingError if they were never fetched."""
        found = sorted(self.folder.glob("*.jar")) if self.folder.is_dir() else []
        if not found:
            raise JarsMissingError(self.name, self.folder)
        return found


def jars_root() -> Path:
    """The project's ``jars/`` folder (override with FLINK_ACTORS_JARS_DIR)."""
    override = os.environ.get("FLINK_ACTORS_JARS_DIR")
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[2] / "jars"


def _flink_set() -> JarSet:
    root = jars_root()
    return JarSet("Flink Kafka connector", root / "flink" / "pom.xml", root / "lib" / "flink")


def _kafka_set() -> JarSet:
    root = jars_root()
    return JarSet("Kafka broker", root / "kafka" / "pom.xml", root / "lib" / "kafka")


def flink_connector_jars() -> list[Path]:
    """Jars a PyFlink job needs for the Kafka connector (connector + its kafka-clients)."""
    return _flink_set().jars()


def jar_urls(paths: list[Path]) -> list[str]:
    """``file:`` URLs, the form ``StreamExecutionEnvironment.add_jars`` expects."""
    return [p.resolve().as_uri() for p in paths]


def flink_connector_jar_urls() -> list[str]:
    """``file:`` URLs of `flink_connector_jars()`, ready for ``env.add_jars(*urls)``."""
    return jar_urls(flink_connector_jars())


def kafka_broker_jars() -> list[Path]:
    """Jars of the Kafka broker."""
    return _kafka_set().jars()


def kafka_broker_classpath() -> str:
    """The broker's ``-cp`` value (a wildcard over its own folder only)."""
    kafka_set = _kafka_set()
    kafka_set.jars()
    return str(kafka_set.folder / "*")


def _fetch(jar_set: JarSet) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenNotFoundError()
    # Start from an empty folder so a changed pom never leaves old versions behind.
    if jar_set.folder.exists():
        shutil.rmtree(jar_set.folder)
    jar_set.folder.mkdir(parents=True)
    _log.info("fetching %s jars with %s", jar_set.name, jar_set.pom)
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(jar_set.pom), "dependency:copy-dependencies"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not any(jar_set.folder.glob("*.jar")):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise StackStartError(
            f"mvn for {jar_set.name} jars",
            f"failed with exit code {proc.returncode} ({tail[0][:200]}); "
            f"check network access to Maven Central and rerun 'flink-actors jars'",
            None,
        )
    (jar_set.folder / _STAMP).write_text(jar_set.pom_digest() + "\n", encoding="utf-8")


def ensure_jars() -> dict[str, Path]:
    """Fetch the connector and broker jars unless already current; returns name -> folder.

    A second call is a no-op: it reads two stamp files and does not start mvn.
    """
    sets = [_flink_set(), _kafka_set()]
    if all(s.is_current() for s in sets):
        return {s.name: s.folder for s in sets}
    lib = jars_root() / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    with open(lib / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for jar_set in sets:
            if not jar_set.is_current():
                _fetch(jar_set)
    return {s.name: s.folder for s in sets}
