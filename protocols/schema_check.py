"""CI check: do the registered message schemas still read what the committed snapshot records?

    python -m protocols.schema_check                  # compare; exit 1 on an incompatible change
    python -m protocols.schema_check --module shop.messages   # import user messages first
    python -m protocols.schema_check --update         # record the current schemas

Exit status: 0 when every recorded (type, version) is still registered and compatible (new
types are reported and allowed); 1 on any incompatible change; 2 on a usage error. After a
compatible change, run with --update so the snapshot records the newest schema. `--update`
refuses to record an incompatible change unless `--force` is given (bump the version instead).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from protocols.registry import MessageRegistry, default_registry

__all__ = ["DEFAULT_SNAPSHOT", "check", "load_snapshot", "main", "write_snapshot"]

DEFAULT_SNAPSHOT = Path(__file__).with_name("schema_snapshot.json")


def load_snapshot(path: Path = DEFAULT_SNAPSHOT) -> dict[str, Any]:
    """Read a snapshot written by `write_snapshot`."""
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def write_snapshot(registry: MessageRegistry, path: Path = DEFAULT_SNAPSHOT) -> None:
    """Record the registry's schemas (stable, sorted JSON, so diffs stay readable)."""
    text = json.dumps(registry.snapshot(), indent=2, sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")


def check(registry: MessageRegistry, snapshot: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(incompatible changes, notes) of `registry` against `snapshot`."""
    lines = registry.compare(snapshot)
    notes = [line.removeprefix("new: ") for line in lines if line.startswith("new:")]
    problems = [line for line in lines if not line.startswith("new:")]
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m protocols.schema_check",
        description="Compare registered message schemas with the committed snapshot.",
    )
    parser.add_argument("--snapshot", type=Path, default=DEFAULT_SNAPSHOT)
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        help="import this module first, to register its messages (repeatable)",
    )
    parser.add_argument("--update", action="store_true", help="write the current schemas")
    parser.add_argument("--force", action="store_true", help="with --update: record anyway")
    args = parser.parse_args(argv)

    import protocols  # noqa: F401  (registers the built-in events)

    for name in args.module:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"cannot import {name!r}: {exc}", file=sys.stderr)
            return 2
    registry = default_registry
    snapshot = load_snapshot(args.snapshot) if args.snapshot.exists() else None
    problems, notes = check(registry, snapshot) if snapshot is not None else ([], [])
    for note in notes:
        print(f"note: {note}")
    for problem in problems:
        print(f"INCOMPATIBLE: {problem}")
    if args.update:
        if problems and not args.force:
            print(
                f"refusing to record {len(problems)} incompatible change(s); bump the version "
                "and add an upcaster, or pass --force",
                file=sys.stderr,
            )
            return 1
        write_snapshot(registry, args.snapshot)
        print(f"recorded {len(registry)} message schemas in {args.snapshot}")
        return 0
    if snapshot is None:
        print(f"no snapshot at {args.snapshot}; create it with --update", file=sys.stderr)
        return 1
    if problems:
        print(
            f"{len(problems)} incompatible schema change(s): revert them, or register the "
            "changed class under a new version with an upcaster from the old one",
            file=sys.stderr,
        )
        return 1
    print(f"{len(registry)} message schemas compatible with {args.snapshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
