"""Ports for local stacks: a set picked at once is all different (one free_port() after another
can return the same port twice; the demo's CLOB sim and data-collector once both got 60107)."""

from __future__ import annotations

import socket

from polymm.sim.ports import free_ports


def test_a_set_of_ports_is_distinct_and_bindable() -> None:
    for _ in range(50):
        ports = free_ports(*(f"p{i}" for i in range(12)))
        assert len(set(ports.values())) == 12
    for port in ports.values():
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
