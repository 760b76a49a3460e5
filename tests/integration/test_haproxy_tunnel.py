"""Long-lived connections on a real HAProxy (issue 14, field fault d): `timeouts.tunnel` keeps an
established connection that is idle longer than the client and server timeouts, and
`timeouts.hardStopAfter` bounds how long the old worker keeps it after a reload. Each is timed
from the moment HAProxy closes an idle connection, against the setting's own negative control."""

from __future__ import annotations

import socket
import time

import pytest

from hakeeper.agents import haproxy_runtime as runtime

from .haproxy_support import FRONTEND_PORT, Lab, spec

pytestmark = pytest.mark.integration


def _idle_connection(address: str) -> socket.socket:
    """A client connection through the balancer that sends nothing (mode tcp: HAProxy connects to
    a backend at once, and the tunnel is established)."""
    return socket.create_connection((address, FRONTEND_PORT), timeout=5)


def _closed_after(connection: socket.socket, since: float, limit: float = 30.0) -> float:
    """Seconds from `since` until HAProxy closes the connection (recv returns nothing)."""
    connection.settimeout(limit)
    with connection:
        try:
            assert connection.recv(1) == b""
        except ConnectionResetError:
            pass
    return time.monotonic() - since


def test_tunnel_timeout_keeps_an_idle_connection_past_the_client_and_server_timeouts(lab: Lab) -> None:
    (a,) = lab.backends("a")
    measured = {}
    for tunnel in (None, "3s"):
        balancer = lab.balancer()
        timeouts = {"client": "1s", "server": "1s", **({"tunnel": tunnel} if tunnel else {})}
        balancer.start(balancer.render(spec(mode="tcp", healthCheck={"type": "tcp"}, timeouts=timeouts),
                                       [a.backend()]))
        connection = _idle_connection(balancer.address)
        measured[tunnel] = _closed_after(connection, time.monotonic())
        balancer.stop()
    print(f"\nidle connection closed after {measured[None]:.2f} s (client/server 1s), "
          f"{measured['3s']:.2f} s (tunnel 3s)")
    assert 0.8 <= measured[None] <= 2.0, measured  # the control: without tunnel, 1 s of idleness ends it
    assert 2.8 <= measured["3s"] <= 4.5, measured


def test_hard_stop_after_bounds_how_long_the_old_worker_keeps_a_connection(lab: Lab) -> None:
    (a,) = lab.backends("a")
    measured = {}
    for hard_stop_after in ("2s", "5s"):
        balancer = lab.balancer()
        timeouts = {"tunnel": "1m", "hardStopAfter": hard_stop_after}
        rendered = balancer.render(spec(mode="tcp", healthCheck={"type": "tcp"}, timeouts=timeouts), [a.backend()])
        balancer.start(rendered)
        connection = _idle_connection(balancer.address)
        # a structural change: the master starts a new worker; the old one keeps this connection
        changed = balancer.render(spec(mode="tcp", healthCheck={"type": "tcp"}, timeouts={**timeouts, "queue": "31s"}),
                                  [a.backend()], previous=rendered.slots)
        balancer.write(changed)
        reloaded = time.monotonic()
        runtime.reload(balancer.master, balancer.admin)
        measured[hard_stop_after] = _closed_after(connection, reloaded)
        balancer.stop()
    print(f"\nafter a reload the old worker closed an idle tunnel after {measured['2s']:.2f} s "
          f"(hardStopAfter 2s) and {measured['5s']:.2f} s (5s); the tunnel timeout was 1m")
    assert 1.8 <= measured["2s"] <= 3.5, measured
    assert 4.8 <= measured["5s"] <= 6.5, measured
