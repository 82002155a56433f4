"""Where the daemons listen: every endpoint binds at start, and a port that is taken is one error that names the
port and the setting that chose it (the daemon then exits at once instead of dying in a thread)."""

from __future__ import annotations

import socket
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server


class PortUnavailable(Exception):
    """A daemon cannot listen where its settings say (the port is taken, or the address is not this machine's)."""


def endpoint(address: str, port: int) -> str:
    """``host:port`` as a URL writes it (an IPv6 address in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _unavailable(address: str, port: int, setting: str, exc: OSError) -> PortUnavailable:
    return PortUnavailable(f"cannot listen on {endpoint(address, port)} (set by {setting}): {exc.strerror or exc}")


def serve_metrics(registry: CollectorRegistry, address: str, port: int, setting: str) -> WSGIServer:
    """Serve ``registry`` as /metrics in a background thread; ``setting`` names what chose the port."""
    try:
        server, _ = start_http_server(port, address, registry=registry)
    except OSError as exc:
        raise _unavailable(address, port, setting, exc) from exc
    return server


def listening_socket(address: str, port: int, setting: str) -> socket.socket:
    """A bound, listening TCP socket (for servers that take one, like uvicorn's)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses a port in TIME_WAIT, as uvicorn
    try:
        sock.bind((address, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise _unavailable(address, port, setting, exc) from exc
    return sock
