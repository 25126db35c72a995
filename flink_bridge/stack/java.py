"""Find the `java` executable the broker and the Flink cluster run on.

Why a module: "no Java" is the most common set-up failure, and it should be one clear line
before any process starts, not a stack trace from subprocess.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from flink_bridge.stack.errors import JavaNotFoundError

__all__ = ["find_java"]


def find_java(environ: Mapping[str, str] | None = None) -> Path:
    """Return the path of `java`: $JAVA_HOME/bin/java if JAVA_HOME is set, else `java` on PATH."""
    env = os.environ if environ is None else environ
    java_home = env.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
        raise JavaNotFoundError(f"JAVA_HOME={java_home!r} has no bin/java")
    found = shutil.which("java", path=env.get("PATH", ""))
    if found is None:
        raise JavaNotFoundError("no 'java' on PATH and JAVA_HOME is not set")
    return Path(found)
