"""Run as a subprocess: join the Ray head at argv[1], run one task, check loopback, print JSON.

argv[2:] are pids of the stack's processes; the probe adds its own pid, so the loopback check
covers the client's own connections to the GCS, raylet and workers while they are open.
"""

from __future__ import annotations

import json
import os
import sys

import ray

from flink_bridge.stack.loopback import non_loopback_sockets


def main() -> None:
    address = sys.argv[1]
    stack_pids = [int(p) for p in sys.argv[2:]]
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # refused: report it as data
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return

    @ray.remote
    def double(x: int) -> int:
        return x * 2

    value = ray.get(double.remote(21), timeout=120)
    offenders = [str(s) for s in non_loopback_sockets([os.getpid(), *stack_pids])]
    ray.shutdown()
    print(json.dumps({"ok": True, "value": value, "non_loopback": offenders}))


if __name__ == "__main__":
    main()
