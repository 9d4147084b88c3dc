"""Loopback ports for the local servers and test fixtures."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"

#: The lowest port :func:`free_port` picks from (below the kernel's ephemeral range).
FREE_PORT_FLOOR = 10000


def _ephemeral_floor() -> int:
    """The first port of the kernel's ephemeral range (``ip_local_port_range``)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now.

    Picked at random *below* the kernel's ephemeral range: a port the kernel hands out
    for ``bind(0)`` is also the kind it gives outgoing connections, so between this
    call and the server's own bind, a client connection elsewhere could take it (seen
    as "address already in use" in a busy test run).
    """
    ceiling = _ephemeral_floor()
    for _ in range(100):
        port = random.randrange(FREE_PORT_FLOOR, ceiling) if ceiling > FREE_PORT_FLOOR else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            chosen: int = sock.getsockname()[1]
            return chosen
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        fallback: int = sock.getsockname()[1]
        return fallback
