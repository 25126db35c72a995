"""Find sockets of the stack's processes that touch anything but loopback.

Why: the design promises that the embedded stack binds and talks only to 127.0.0.1. Ray and
the JVMs fork helpers and open ports of their own; this walks each process and all of its
descendants and reports every TCP/UDP socket whose local address is not loopback (a listener
on 0.0.0.0 or ::, or on a LAN address) or whose remote address is not loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

__all__ = ["SocketInfo", "is_loopback", "non_loopback_sockets", "process_tree"]


@dataclass(frozen=True)
class SocketInfo:
    """One offending socket."""

    pid: int
    process: str
    kind: str
    status: str
    local: str
    remote: str

    def __str__(self) -> str:
        return (
            f"pid {self.pid} ({self.process}) {self.kind} {self.status} "
            f"local {self.local} remote {self.remote or '-'}"
        )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1)."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def process_tree(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes `pids` and all their descendants that still run."""
    seen: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in family:
            seen.setdefault(proc.pid, proc)
    return list(seen.values())


def non_loopback_sockets(pids: Iterable[int]) -> list[SocketInfo]:
    """Every inet socket of `pids` (and descendants) not confined to loopback."""
    found: list[SocketInfo] = []
    for proc in process_tree(pids):
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for conn in conns:
            local_host = conn.laddr.ip if conn.laddr else ""
            remote_host = conn.raddr.ip if conn.raddr else ""
            bad_local = bool(local_host) and not is_loopback(local_host)
            bad_remote = bool(remote_host) and not is_loopback(remote_host)
            if bad_local or bad_remote:
                found.append(
                    SocketInfo(
                        pid=proc.pid,
                        process=name,
                        kind="tcp" if conn.type == 1 else "udp",
                        status=conn.status,
                        local=f"{local_host}:{conn.laddr.port}" if conn.laddr else "",
                        remote=f"{remote_host}:{conn.raddr.port}" if conn.raddr else "",
                    )
                )
    return found
