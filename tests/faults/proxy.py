"""A TCP relay in front of the test broker: cut it to take the broker away from every client at once
(an outage or a network partition, with the broker's data kept), restore it to bring it back.

The broker advertises the relay's address, so every connection a client opens goes through it. With an
``ssl.SSLContext`` the relay also terminates TLS, as a load balancer or a TLS sidecar in front of Kafka
would: clients then speak real TLS to it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
from collections.abc import Iterator
from types import TracebackType

from fleetmeter.demo.broker import EmbeddedBroker, free_port


class Relay:
    def __init__(self, upstream: tuple[str, int], port: int, tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.port = port
        self.tls = tls
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", port))
        self._cut = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> Relay:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        return self

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`restore`."""
        self._cut.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._cut.is_set():
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(self.upstream)
        except (OSError, ssl.SSLError):
            client.close()
            return
        with self._lock:
            self.connections += 1
            self._open.update((client, upstream))
        self._pump(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while not self._cut.is_set():
                    for key, _ in selector.select(timeout=0.2):
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(1 << 16)
                        if not data:
                            return
                        peers[source].sendall(data)
                    pending = isinstance(client, ssl.SSLSocket) and client.pending()
                    if pending:  # TLS may hold decrypted bytes that select() cannot see
                        upstream.sendall(client.recv(pending))
            except OSError:
                return
            finally:
                for sock in peers:
                    with contextlib.suppress(OSError):
                        sock.close()
                with self._lock:
                    self._open.difference_update(peers)


@contextlib.contextmanager
def broker_behind_relay(tls: ssl.SSLContext | None = None) -> Iterator[tuple[EmbeddedBroker, Relay, str]]:
    """A fresh broker that tells clients to connect through a relay; the relay's bootstrap address."""
    relay_port = free_port()
    with EmbeddedBroker(advertised_port=relay_port) as broker, \
            Relay(("127.0.0.1", broker.port), relay_port, tls) as relay:
        yield broker, relay, f"127.0.0.1:{relay_port}"
