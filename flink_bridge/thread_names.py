"""OS-level names for the runtime's own threads, so per-thread tools see them.

Python's `threading` names exist only inside Python; `top -H`, `ps -L` and /proc show a thread
the name of the thread that created it, so inside a TaskManager every bridge thread reads as
the Flink task that started it. Linux takes a name of up to 15 bytes with ``prctl``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["name_this_thread"]

_PR_SET_NAME = 15


def name_this_thread(name: str) -> None:
    """Give the calling thread `name` (cut to 15 bytes) at the OS level; best effort, Linux."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):  # no libc to load, or no prctl in it
        return
