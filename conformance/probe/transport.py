"""How the probe's requests travel: httpx on httpcore with one deadline per exchange.

``DeadlineTransport`` is httpcore's HTTP/1.1 pool on a network backend that enforces the
exchange's deadline on connect, TLS, write and every read; ``transfer`` sends one request
and records the answer (status, headers, TLS facts, body up to the limit) into its
``Exchange``; ``classify_failure`` turns any failure into (error_kind, one line). Split from
sender.py (issue 17). May import: auth, exchange, target; never the engine or checks.
"""

from __future__ import annotations

import http.cookiejar
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import httpcore
import httpx
from cryptography import x509

from conformance.core.exchange import Exchange, TlsFacts
from conformance.target.auth import tls_context
from conformance.target.file import Target

RAW_TARGET: Final = "kms_conformance.raw_target"
IDENTITY_EXTENSION: Final = "kms_conformance.identity"
_MAX_ERROR_CHARS: Final = 300

# -- transport -----------------------------------------------------------------------------


class NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that never stores a cookie, so none is ever sent back."""

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


def ssl_context_for(target: Target) -> ssl.SSLContext:
    return tls_context(target)


class DeadlineTransport(httpx.BaseTransport):
    """httpcore's HTTP/1.1 pool on a network backend that enforces one deadline per exchange.

    A raw request path travels in the request extension ``RAW_TARGET`` and is sent as is
    (httpx would remove dot segments, which some probes must send).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.backend = _DeadlineBackend()
        self._context = context
        # One pool per identity (the request extension IDENTITY_EXTENSION): keep-alive within an
        # identity, never a connection that carried another identity's credentials.
        self._pools: dict[str, httpcore.ConnectionPool] = {}

    def _pool(self, identity: str) -> httpcore.ConnectionPool:
        pool = self._pools.get(identity)
        if pool is None:
            pool = httpcore.ConnectionPool(
                ssl_context=self._context, http1=True, http2=False, network_backend=self.backend
            )
            self._pools[identity] = pool
        return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raw_target = request.extensions.get(RAW_TARGET)
        target = raw_target if isinstance(raw_target, bytes) else request.url.raw_path
        identity = str(request.extensions.get(IDENTITY_EXTENSION, "anonymous"))
        extensions = {
            k: v for k, v in request.extensions.items() if k not in (RAW_TARGET, IDENTITY_EXTENSION)
        }
        stream = request.stream
        assert isinstance(stream, httpx.SyncByteStream)
        core_response = self._pool(identity).handle_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=target,
                ),
                headers=request.headers.raw,
                content=stream,
                extensions=extensions,
            )
        )
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()
        self.deadline: float | None = None

    def bounded(self, timeout: float | None, timeout_error: type[Exception]) -> float | None:
        if self.deadline is None:
            return timeout
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise timeout_error("the exchange deadline has passed")
        return remaining if timeout is None else min(timeout, remaining)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host,
            port,
            self.bounded(timeout, httpcore.ConnectTimeout),
            local_address,
            socket_options,
        )
        return _DeadlineStream(stream, self)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, self.bounded(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, backend: _DeadlineBackend) -> None:
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._backend.bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._backend.bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, bounded), self._backend
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def raw_chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_raw()
    except httpx.StreamConsumed:
        # In-process transports may hand over a response whose body is already read.
        yield response.content


def tls_facts(response: httpx.Response) -> TlsFacts | None:
    stream = response.extensions.get("network_stream")
    get_extra_info = getattr(stream, "get_extra_info", None)
    if get_extra_info is None:
        return None
    # httpcore hands out ssl.SSLObject or the _ssl socket object behind an ssl.SSLSocket:
    # both have version(), cipher() and getpeercert(binary_form) (positional).
    ssl_object: Any = get_extra_info("ssl_object")
    if ssl_object is None or not hasattr(ssl_object, "getpeercert"):
        return None
    cipher = ssl_object.cipher()
    version, cipher_name = ssl_object.version(), cipher[0] if cipher else None
    der = ssl_object.getpeercert(True)
    if not der:
        return TlsFacts(version=version, cipher=cipher_name)
    try:
        certificate = x509.load_der_x509_certificate(der)
        return TlsFacts(
            version=version,
            cipher=cipher_name,
            peer_subject=certificate.subject.rfc4514_string(),
            peer_issuer=certificate.issuer.rfc4514_string(),
            peer_san=_subject_alt_names(certificate),
            peer_not_after=certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    except ValueError:
        return TlsFacts(version=version, cipher=cipher_name)


def _subject_alt_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    names = extension.value
    return tuple(
        [f"DNS:{name}" for name in names.get_values_for_type(x509.DNSName)]
        + [f"IP:{address}" for address in names.get_values_for_type(x509.IPAddress)]
        + [f"URI:{uri}" for uri in names.get_values_for_type(x509.UniformResourceIdentifier)]
    )


# -- failures as one line ----------------------------------------------------------------------

_TIMEOUT_PHASES: Final = (
    ((httpx.ConnectTimeout, httpcore.ConnectTimeout), "connecting"),
    ((httpx.WriteTimeout, httpcore.WriteTimeout), "sending the request"),
    ((httpx.PoolTimeout, httpcore.PoolTimeout), "waiting for a connection"),
)


def classify_failure(exc: BaseException, timeout_s: float, in_body: bool) -> tuple[str, str]:
    """(error_kind, one-line error) of a failed exchange."""
    if isinstance(exc, httpx.TimeoutException | httpcore.TimeoutException | socket.timeout):
        phase = next(
            (name for kinds, name in _TIMEOUT_PHASES if isinstance(exc, kinds)),
            "reading the response body" if in_body else "waiting for the response",
        )
        return "timeout", f"no complete answer within {timeout_s:g} s (timed out {phase})"
    tls_error = _ssl_cause(exc)
    if tls_error is not None:
        return "tls", one_line(f"TLS: {_describe_ssl(tls_error)}")
    if isinstance(exc, httpx.ConnectError | httpcore.ConnectError):
        return "connect", one_line(f"cannot connect: {_cause_text(exc)}")
    if isinstance(exc, httpx.RemoteProtocolError | httpcore.RemoteProtocolError):
        where = "connection closed mid-body" if in_body else "protocol error"
        return "protocol", one_line(f"{where}: {_cause_text(exc)}")
    if isinstance(exc, httpx.ReadError | httpcore.ReadError):
        where = "connection failed mid-body" if in_body else "reading the response failed"
        return "protocol", one_line(f"{where}: {_cause_text(exc)}")
    if isinstance(exc, httpx.WriteError | httpcore.WriteError):
        return "protocol", one_line(f"sending the request failed: {_cause_text(exc)}")
    if isinstance(exc, httpx.LocalProtocolError | httpcore.LocalProtocolError):
        # Not the message: h11 quotes the offending header, which may be the token.
        return "usage", "the request could not be sent: HTTP/1.1 refuses one of its headers"
    if isinstance(exc, httpx.UnsupportedProtocol | httpcore.UnsupportedProtocol):
        return "usage", one_line(f"the request could not be sent: {_cause_text(exc)}")
    return "protocol", one_line(f"{type(exc).__name__}: {_cause_text(exc)}")


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _describe_ssl(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = error.verify_message or "unknown reason"
        return f"certificate verify failed: {detail}"
    text = str(error.args[1]) if len(error.args) > 1 else str(error)
    return text.split(" (_ssl.c:", 1)[0]


def _cause_text(exc: BaseException) -> str:
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    while not text and cause is not None:
        text = str(cause) or type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return text or type(exc).__name__


def one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_ERROR_CHARS else flat[: _MAX_ERROR_CHARS - 3] + "..."


# -- one exchange ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeBounds:
    """The bounds of one exchange: when it started, its deadline and the body limit."""

    started: float  # time.monotonic()
    timeout_s: float
    max_body: int

    @property
    def deadline(self) -> float:
        return self.started + self.timeout_s


def new_client(transport: httpx.BaseTransport, timeout_s: float) -> httpx.Client:
    """A client that keeps no state between requests a case does not ask for (DESIGN.md 9):
    cookies a target sets are never stored nor sent back, redirects are never followed."""
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        cookies=NoCookies(),
    )


def transfer(
    client: httpx.Client,
    request: httpx.Request,
    exchange: Exchange,
    limits: ExchangeBounds,
    *,
    deadline_transport: DeadlineTransport | None,
    record_tls: bool,
) -> None:
    """Send ``request`` and record the answer in ``exchange``; never raises."""
    if deadline_transport is not None:
        deadline_transport.backend.deadline = limits.deadline
    in_body = False
    try:
        response = client.send(request, stream=True)
        try:
            exchange.status = response.status_code
            exchange.reason = response.reason_phrase
            exchange.http_version = response.http_version
            exchange.headers = tuple(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw
            )
            if record_tls:
                exchange.tls = tls_facts(response)
            in_body = True
            read_body(response, exchange, limits)
        finally:
            response.close()
    except Exception as exc:  # every failure becomes a one-line record, never a traceback
        exchange.error_kind, exchange.error = classify_failure(exc, limits.timeout_s, in_body)
    exchange.elapsed_s = time.monotonic() - limits.started
    if exchange.header("content-encoding") not in (None, "identity"):
        exchange.notes.append(
            "the response has a Content-Encoding although identity was asked for; "
            "the body is recorded undecoded"
        )


def read_body(response: httpx.Response, exchange: Exchange, limits: ExchangeBounds) -> None:
    """Read the body up to the limit and the deadline; what arrived is kept either way."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in raw_chunks(response):
            chunks.append(chunk)
            size += len(chunk)
            if size > limits.max_body:
                exchange.truncated = True
                exchange.error = f"response body exceeds {limits.max_body} bytes"
                exchange.error_kind = "too-large"
                break
            if time.monotonic() > limits.deadline:
                exchange.error = f"response body not complete within {limits.timeout_s:g} s"
                exchange.error_kind = "timeout"
                break
    finally:
        # What arrived before a failure is evidence too.
        exchange.body = b"".join(chunks)[: limits.max_body]
