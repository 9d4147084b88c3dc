"""free_port picks loopback ports below the kernel's ephemeral range."""

from __future__ import annotations

import socket

import pytest

from pumphouse import ports
from pumphouse.ports import FREE_PORT_FLOOR, free_port


def test_free_ports_lie_below_the_ephemeral_range_and_can_be_bound() -> None:
    ceiling = ports._ephemeral_floor()
    chosen = {free_port() for _ in range(20)}
    assert all(FREE_PORT_FLOOR <= port < ceiling for port in chosen)
    assert len(chosen) > 1, "picked at random, not one fixed port"
    for port in chosen:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((ports.LOOPBACK, port))


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((ports.LOOPBACK, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = iter([taken, taken, taken - 1])
        monkeypatch.setattr(ports, "_ephemeral_floor", lambda: 65536)
        monkeypatch.setattr(ports.random, "randrange", lambda _low, _high: next(picks))
        assert free_port() == taken - 1
