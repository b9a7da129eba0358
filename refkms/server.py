"""Running the reference KMS: uvicorn on a loopback socket, target.toml once it listens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn

from refkms.app import create_app
from refkms.domain import Domain
from refkms.loadusers import add_user_pattern
from refkms.state import StateDir
from refkms.target import target_description, write_target
from refkms.tls import TlsFiles

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Listening:
    base_url: str
    port: int


def run_forever(domain: Domain, state: StateDir, port: int, use_tls: bool) -> int:
    """Serve until SIGINT/SIGTERM; write DIR/target.toml as soon as the socket listens."""
    _log_to_stderr()
    tls = state.tls() if use_tls else None
    server, sock, listening = _prepare(domain, port, tls)

    def announce() -> None:
        description = target_description(domain, listening.base_url, tls.ca_file if tls else None)
        add_user_pattern(description, domain, state.path)
        write_target(state.target_file, description)
        print(f"refkms: serving {listening.base_url}", flush=True)
        print(f"refkms: target file {state.target_file}", flush=True)

    asyncio.run(_serve(server, sock, announce))
    return 0


@contextlib.contextmanager
def running_in_thread(domain: Domain, tls: TlsFiles | None) -> Iterator[Listening]:
    """A server on an ephemeral loopback port for the duration of the block (tests, bench)."""
    server, sock, listening = _prepare(domain, 0, tls)
    started = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(_serve(server, sock, started.set)), daemon=True
    )
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the reference KMS did not start within 30 s")
    try:
        yield listening
    finally:
        server.should_exit = True
        thread.join(10)


class _Server(uvicorn.Server):
    """uvicorn, but a signal means a clean exit with status 0 instead of a re-raise."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _prepare(
    domain: Domain, port: int, tls: TlsFiles | None
) -> tuple[_Server, socket.socket, Listening]:
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it each response waits 40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(domain),
        ssl_certfile=str(tls.cert_file) if tls else None,
        ssl_keyfile=str(tls.key_file) if tls else None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    scheme = "https" if tls else "http"
    base_url = f"{scheme}://{HOST}:{bound}/keymanagement/identity/v1"
    return _Server(config), sock, Listening(base_url, bound)


async def _serve(server: _Server, sock: socket.socket, on_started: Callable[[], None]) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        on_started()
    await task


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("refkms")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
