"""Tiny loopback servers that misbehave on purpose: silent, dripping, oversized, redirecting.

Each runs one thread per connection and records the request head it read, so a test can
check what went over the wire. ``tls`` wraps accepted sockets with a server context.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

Handler = Callable[[socket.socket, threading.Event], None]


@dataclass
class RawServer:
    port: int
    requests: list[bytes] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/keymanagement/identity/v1"

    @property
    def https_base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/keymanagement/identity/v1"


@contextmanager
def raw_server(respond: Handler, tls: ssl.SSLContext | None = None) -> Iterator[RawServer]:
    """Serve ``respond`` on an ephemeral loopback port; the request head is read first."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = RawServer(listener.getsockname()[1])
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn:
            try:
                if tls is not None:
                    conn = tls.wrap_socket(conn, server_side=True)
                conn.settimeout(5)
                server.requests.append(_read_request(conn))
                respond(conn, stop)
            except (OSError, ssl.SSLError):
                pass

    def accept_loop() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accept the request and never answer."""
    stop.wait(10)


def drip(response: bytes, interval_s: float = 0.2) -> Handler:
    """Send ``response`` one byte per ``interval_s``."""

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        for octet in response:
            if stop.wait(interval_s):
                return
            conn.sendall(bytes([octet]))

    return respond


def fixed(response: bytes) -> Handler:
    """Send ``response`` at once and close."""

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(response)
        with suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        time.sleep(0.05)

    return respond


def http_response(status: str, body: bytes = b"", headers: tuple[str, ...] = ()) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def refused_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head
