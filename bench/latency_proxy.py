"""A loopback TCP proxy that delays every byte by a fixed time each way (a remote KMS).

TLS passes through untouched (the proxy only relays bytes), so the harness still talks
HTTPS to the reference KMS and verifies its certificate; only the round trips get longer:
each chunk read from one side is written to the other ``delay_s`` later, in order, the
way a link with that one-way latency and ample bandwidth behaves.

    with LatencyProxy(("127.0.0.1", 8443), delay_s=0.020) as proxy:
        ...  # connect to ("127.0.0.1", proxy.port)

Standalone: ``python bench/latency_proxy.py UPSTREAM_PORT [DELAY_MS]`` serves until ^C.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from types import TracebackType

_CHUNK = 65536


class LatencyProxy:
    """Runs the proxy on its own event loop in a daemon thread of this process."""

    def __init__(self, upstream: tuple[str, int], delay_s: float) -> None:
        self.upstream = upstream
        self.delay_s = delay_s
        self.port = 0
        self.connections = 0  # accepted so far (a TLS handshake each)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="latency-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the latency proxy did not start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for end in (writer, up_writer):
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                end.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay reader -> writer, each chunk ``delay_s`` after it arrived, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(_CHUNK)
                queue.put_nowait((time.monotonic() + self.delay_s, data))
                if not data:
                    break
            await sender
        except (ConnectionError, OSError):
            sender.cancel()
        finally:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                if writer.can_write_eof():  # half-close: the other direction goes on
                    writer.write_eof()


def main() -> None:
    port = int(sys.argv[1])
    delay_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    with LatencyProxy(("127.0.0.1", port), delay_ms / 1000) as proxy:
        print(f"127.0.0.1:{proxy.port} -> 127.0.0.1:{port}, {delay_ms:g} ms each way", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
