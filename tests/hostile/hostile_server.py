"""A hostile KMS for the harness's robustness tests (issue 6 item 3, DESIGN.md section 8).

A threaded HTTPS server on loopback, written on raw sockets so that it can misbehave
below the level an HTTP library allows: drip a byte a second, reset a connection mid-body,
answer HTTP/1.0 with a close-delimited body, stream 200 MB without holding them. Each
mode says, per request type (the path segment after ``/keymanagement/identity/v1/``), what
the server does; a request type the mode does not mention is forwarded to an upstream
(a reference KMS) and its answer is relayed as is, so the harness sees honest answers
everywhere except where the mode is hostile. Without an upstream a canned, well-formed
``KmsResponse`` stands in.

TLS comes from a CA made for the test (``Pki``): a good certificate for 127.0.0.1 and
localhost, one for the wrong host, and a self-signed one.

Run alone for a manual look: ``python tests/hostile/hostile_server.py MODE DIR`` writes
``DIR/target.toml`` and serves until interrupted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from conformance.run.embedded_config import toml_text
from refkms.tls import (
    Issued,
    issue_ca,
    issue_certificate,
    write_ca_file,
    write_certificate_files,
)

NAMESPACE = "urn:3gpp:ns:mcsecKMSInterface:1.0"
API_PREFIX = "/keymanagement/identity/v1/"
BIG_BODY_BYTES = 200 * 1024 * 1024
DRIP_INTERVAL_S = 1.0
# A hostile connection never outlives this, whatever the client does.
MAX_CONNECTION_S = 120.0
TIMEOUT_S = 3.0
MAX_BODY_BYTES = 4 * 1024 * 1024
# The test's certificates need only outlive the test.
TEST_VALIDITY = timedelta(days=2)

# mode -> (certificate, {request type or "*": behaviour}); request types not listed are
# relayed from the upstream.
MODES: dict[str, tuple[str, dict[str, str]]] = {
    "xxe": ("good", {"*": "xxe"}),
    "entity-bomb": ("good", {"*": "entity-bomb"}),
    "big-body": ("good", {"*": "big-body"}),
    "drip": ("good", {"*": "drip"}),
    "bad-utf8": ("good", {"*": "bad-utf8"}),
    "text-content-type": ("good", {"*": "text-content-type"}),
    "xml-content-type-not-xml": ("good", {"*": "xml-content-type-not-xml"}),
    "redirect": ("good", {"*": "redirect"}),
    "wrong-host-cert": ("wrong-host", {}),
    "self-signed-cert": ("self-signed", {}),
    "reset-mid-body": ("good", {"*": "reset-mid-body"}),
    "http10-close-delimited": ("good", {"*": "http10-close-delimited"}),
    "drip-keyprov-only": ("good", {"keyprov": "drip-from-status-line"}),
    "reset-keyprov-only": ("good", {"keyprov": "reset-mid-body"}),
}
# Issue 13: answers within the body cap that cost more to look at than to send, an honest
# KMS padded to the cap, and one that sets cookies on keep-alive connections. Kept apart
# from MODES (tests/test_hostile_targets.py runs every mode of that table).
BUDGET_MODES: dict[str, tuple[str, dict[str, str]]] = {
    "many-attributes": ("good", {"*": "many-attributes"}),
    "namespace-flood": ("good", {"*": "namespace-flood"}),
    "deep-nesting": ("good", {"*": "deep-nesting"}),
    "huge-text": ("good", {"*": "huge-text"}),
    "many-elements": ("good", {"*": "many-elements"}),
    "namespace-flood-keyprov-only": ("good", {"keyprov": "namespace-flood"}),
    "at-cap": ("good", {"*": "at-cap"}),
    "set-cookie": ("good", {"*": "set-cookie"}),
}
ALL_MODES = {**MODES, **BUDGET_MODES}
# Behaviours that answer and keep the connection open for the next request.
KEEP_ALIVE = frozenset({"set-cookie"})
ATTRIBUTES = 250_000
NESTED_CHAINS = (200, 40)  # 200 chains of 40 nested elements, each declaring 3 namespaces
NESTING_DEPTH = 250  # under libxml2's own 256 without XML_PARSE_HUGE
HUGE_TEXT_CHARS = 3_900_000
ELEMENTS = 800_000


# -- PKI -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files of a CA made for the test and three server certificates."""

    ca_file: Path
    certificates: dict[str, tuple[Path, Path]]  # name -> (certificate chain, key)

    def server_context(self, name: str) -> ssl.SSLContext:
        chain, key = self.certificates[name]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(chain), str(key))
        return context


def make_pki(directory: Path) -> Pki:
    """A CA and server certificates: ``good`` (127.0.0.1, localhost), ``wrong-host``
    (signed by the CA for kms.wrong-host.invalid only) and ``self-signed`` (127.0.0.1)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = issue_ca("hostile-test CA", validity=TEST_VALIDITY)
    ca_file = directory / "ca.pem"
    write_ca_file(ca_file, ca)
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    wrong = [x509.DNSName("kms.wrong-host.invalid")]
    certificates = {
        "good": _leaf(directory, "good", loopback, ca),
        "wrong-host": _leaf(directory, "wrong-host", wrong, ca),
        "self-signed": _leaf(directory, "self-signed", loopback, None),
    }
    return Pki(ca_file, certificates)


def _leaf(
    directory: Path, label: str, names: list[x509.GeneralName], issuer: Issued | None
) -> tuple[Path, Path]:
    """A server certificate signed by ``issuer`` (the CA), or by itself without one."""
    issued = issue_certificate(f"hostile-test {label}", issuer, names=names, validity=TEST_VALIDITY)
    chain_file, key_file = directory / f"{label}.pem", directory / f"{label}.key"
    write_certificate_files(
        chain_file, key_file, issued, chain=[issuer[0]] if issuer is not None else []
    )
    return chain_file, key_file


# -- requests and the upstream --------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def request_type(self) -> str:
        path = self.target.split("?", 1)[0]
        if not path.startswith(API_PREFIX):
            return ""
        return path[len(API_PREFIX) :].split("/", 1)[0]

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


# An upstream answers one request as an honest KMS would (the tests relay a reference KMS).
Upstream = Callable[[Request, str], Answer]


def canned_answer(request: Request, base_url: str) -> Answer:
    """A well-formed KmsResponse (not a conformant one): what modes relay without upstream."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<KmsResponse xmlns="{NAMESPACE}" Version="1.1.0">'
        "<KmsUri>kms.hostile.test</KmsUri>"
        "<UserUri>sip:alice@hostile.test</UserUri>"
        "<Time>2026-01-01T00:00:00Z</Time>"
        f"<ClientReqUrl>{_xml_text(base_url + request.target)}</ClientReqUrl>"
        "<KmsMessage/>"
        "</KmsResponse>\n"
    ).encode()
    return Answer(200, (("Content-Type", "application/xml"),), body)


def relay(upstream_base_url: str, ca_file: Path) -> Upstream:
    """An upstream that forwards each request to a real KMS (the reference KMS in the tests)
    with the Host header the harness sent, so that echoed URLs name the hostile server."""
    origin = upstream_base_url.split("/keymanagement/", 1)[0]
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)), timeout=30)
    skip = {"content-length", "transfer-encoding", "connection", "keep-alive"}

    def forward(request: Request, base_url: str) -> Answer:
        headers = [(k, v) for k, v in request.headers if k.lower() not in skip]
        response = client.request(
            request.method, origin + request.target, headers=headers, content=request.body
        )
        kept = tuple((k, v) for k, v in response.headers.items() if k.lower() not in skip)
        return Answer(response.status_code, kept, response.content)

    return forward


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the server ---------------------------------------------------------------------------


@dataclass
class Counter:
    """Connections a listener accepted (the 'other host' must see none)."""

    accepted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self) -> None:
        with self.lock:
            self.accepted += 1


class HostileServer:
    """One mode on 127.0.0.1, plus a plain TCP listener on 127.0.0.2 that stands for
    "another host": redirects and external entities point at it, so a test can prove
    that nothing ever connected there."""

    def __init__(
        self,
        mode: str,
        pki: Pki,
        canary_file: Path,
        upstream: Upstream | None = None,
    ) -> None:
        if mode not in ALL_MODES:
            raise ValueError(f"unknown hostile mode {mode!r} (known: {', '.join(ALL_MODES)})")
        certificate, self.behaviours = ALL_MODES[mode]
        self.mode = mode
        self.canary_file = canary_file
        self.upstream = upstream or canned_answer
        self._context = pki.server_context(certificate)
        self._stop = threading.Event()
        self._listener = _listen("127.0.0.1")
        try:
            self._other = _listen("127.0.0.2")
        except OSError:  # not every system routes all of 127/8 to loopback
            self._other = _listen("127.0.0.1")
        self.other_host = Counter()
        self.requests: list[str] = []
        # (client port, request type, Authorization sent, Cookie header or None) per request
        self.seen: list[tuple[int, str, bool, str | None]] = []
        self.cookies_set: list[str] = []
        self.failures: list[str] = []
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def other_url(self) -> str:
        host, port = self._other.getsockname()[:2]
        return f"https://{host}:{port}"

    def __enter__(self) -> HostileServer:
        for listener, handler in ((self._listener, self._serve), (self._other, self._refuse)):
            thread = threading.Thread(
                target=self._accept_loop, args=(listener, handler), daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for listener in (self._listener, self._other):
            with contextlib.suppress(OSError):
                listener.close()
        for thread in self._threads:
            thread.join(5)

    # -- accept and dispatch ----------------------------------------------------------------

    def _accept_loop(
        self, listener: socket.socket, handler: Callable[[socket.socket], None]
    ) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._guarded, args=(handler, conn), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _guarded(self, handler: Callable[[socket.socket], None], conn: socket.socket) -> None:
        # A client that gives up (timeout, cap) breaks the connection: that is expected.
        try:
            conn.settimeout(MAX_CONNECTION_S)
            handler(conn)
        except OSError:  # ssl.SSLError included
            pass
        except Exception as exc:  # the server's own bug: the test reports it
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _refuse(self, conn: socket.socket) -> None:
        self.other_host.add()

    def _serve(self, raw: socket.socket) -> None:
        port = raw.getpeername()[1]
        conn = self._context.wrap_socket(raw, server_side=True)
        reader = _Reader(conn)
        while not self._stop.is_set():
            request = reader.request()
            if request is None:
                return
            self.requests.append(f"{request.method} {request.target}")
            self.seen.append(
                (
                    port,
                    request.request_type,
                    request.header("authorization") is not None,
                    request.header("cookie"),
                )
            )
            behaviour = self.behaviours.get(request.request_type) or self.behaviours.get("*")
            if behaviour is None:
                answer = self.upstream(request, self.base_url)
                _send_answer(conn, answer)
                continue
            _BEHAVIOURS[behaviour](self, conn, request)
            if behaviour not in KEEP_ALIVE:
                return

    # -- hostile behaviours (each ends the connection) --------------------------------------

    def xxe(self, conn: ssl.SSLSocket, request: Request) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            "<!DOCTYPE KmsResponse [\n"
            f'  <!ENTITY canary SYSTEM "{self.canary_file.resolve().as_uri()}">\n'
            f'  <!ENTITY remote SYSTEM "{self.other_url}/xxe.txt">\n'
            "]>\n"
            f'<KmsResponse xmlns="{NAMESPACE}" Version="1.1.0">'
            "<KmsUri>&canary;</KmsUri><UserUri>&remote;</UserUri>"
            "<Time>2026-01-01T00:00:00Z</Time><ClientReqUrl>&canary;</ClientReqUrl>"
            "<KmsMessage/></KmsResponse>\n"
        ).encode()
        _send_answer(conn, Answer(200, (("Content-Type", "application/xml"),), body))

    def entity_bomb(self, conn: ssl.SSLSocket, request: Request) -> None:
        entities = ['  <!ENTITY lol0 "lollollollollollollollollollol">']
        entities += [
            f'  <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
        ]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            "<!DOCTYPE KmsResponse [\n" + "\n".join(entities) + "\n]>\n"
            f'<KmsResponse xmlns="{NAMESPACE}" Version="1.1.0">'
            "<KmsUri>&lol9;</KmsUri><UserUri>&lol9;</UserUri>"
            "<Time>2026-01-01T00:00:00Z</Time><ClientReqUrl>&lol9;</ClientReqUrl>"
            "<KmsMessage/></KmsResponse>\n"
        ).encode()
        _send_answer(conn, Answer(200, (("Content-Type", "application/xml"),), body))

    def big_body(self, conn: ssl.SSLSocket, request: Request) -> None:
        head = f'<?xml version="1.0"?><KmsResponse xmlns="{NAMESPACE}"><KmsUri>'.encode()
        _send_head(conn, 200, [("Content-Type", "application/xml")], BIG_BODY_BYTES)
        conn.sendall(head)
        filler = b"A" * 65536
        left = BIG_BODY_BYTES - len(head)
        while left > 0 and not self._stop.is_set():
            piece = filler[: min(left, len(filler))]
            conn.sendall(piece)
            left -= len(piece)

    def drip(self, conn: ssl.SSLSocket, request: Request) -> None:
        """The head at once, then the body one byte a second."""
        answer = self.upstream(request, self.base_url)
        _send_head(conn, answer.status, _content_headers(answer), len(answer.body))
        self._drip(conn, answer.body)

    def drip_from_status_line(self, conn: ssl.SSLSocket, request: Request) -> None:
        """Everything, status line included, one byte a second (slowloris in reverse)."""
        answer = self.upstream(request, self.base_url)
        self._drip(
            conn, _head(answer.status, _content_headers(answer), len(answer.body)) + answer.body
        )

    def _drip(self, conn: ssl.SSLSocket, data: bytes) -> None:
        started = time.monotonic()
        for index in range(len(data)):
            if self._stop.wait(DRIP_INTERVAL_S) or time.monotonic() - started > MAX_CONNECTION_S:
                return
            conn.sendall(data[index : index + 1])

    def bad_utf8(self, conn: ssl.SSLSocket, request: Request) -> None:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n'
            + f'<KmsResponse xmlns="{NAMESPACE}" Version="1.1.0">'.encode()
            + b"<KmsUri>kms.\xff\xfe\xc3\x28.test</KmsUri><UserUri>sip:\xed\xa0\x80@x</UserUri>"
            + b"<Time>2026-01-01T00:00:00Z</Time><ClientReqUrl>\x80\x81</ClientReqUrl>"
            + b"<KmsMessage/></KmsResponse>\n"
        )
        _send_answer(conn, Answer(200, (("Content-Type", "application/xml; charset=utf-8"),), body))

    def text_content_type(self, conn: ssl.SSLSocket, request: Request) -> None:
        answer = self.upstream(request, self.base_url)
        headers = tuple(h for h in answer.headers if h[0].lower() != "content-type")
        _send_answer(
            conn, Answer(answer.status, (*headers, ("Content-Type", "text/plain")), answer.body)
        )

    def xml_content_type_not_xml(self, conn: ssl.SSLSocket, request: Request) -> None:
        body = json.dumps({"KmsResponse": {"KmsUri": "kms.hostile.test", "note": "not XML"}})
        _send_answer(conn, Answer(200, (("Content-Type", "application/xml"),), body.encode()))

    def redirect(self, conn: ssl.SSLSocket, request: Request) -> None:
        location = self.other_url + request.target
        _send_answer(conn, Answer(302, (("Location", location),), b""))

    def reset_mid_body(self, conn: ssl.SSLSocket, request: Request) -> None:
        answer = self.upstream(request, self.base_url)
        _send_head(conn, answer.status, _content_headers(answer), len(answer.body))
        conn.sendall(answer.body[: len(answer.body) // 2])
        time.sleep(0.2)  # let the half arrive before the reset discards what is unsent
        # SO_LINGER with a zero timeout: close() sends a TCP RST instead of a FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    def http10_close_delimited(self, conn: ssl.SSLSocket, request: Request) -> None:
        answer = self.upstream(request, self.base_url)
        lines = [f"HTTP/1.0 {answer.status} OK", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in _content_headers(answer)]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body)
        # The end of the body is the end of the connection: a clean TLS close_notify, then FIN.
        with contextlib.suppress(OSError, ssl.SSLError):
            conn.unwrap().close()

    # -- issue 13: costly structure, answers at the cap, cookies --------------------------

    def _pathological(self, conn: ssl.SSLSocket, inner: str, root_extra: str = "") -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<KmsResponse xmlns="{NAMESPACE}" '
            f'Version="1.1.0"{root_extra}><KmsUri>kms.hostile.test</KmsUri>'
            "<UserUri>sip:alice@hostile.test</UserUri><Time>2026-01-01T00:00:00Z</Time>"
            f"<ClientReqUrl>https://127.0.0.1/</ClientReqUrl><KmsMessage>{inner}</KmsMessage>"
            "</KmsResponse>\n"
        ).encode()
        assert len(body) < MAX_BODY_BYTES, len(body)
        _send_answer(conn, Answer(200, (("Content-Type", "application/xml"),), body))

    def many_attributes(self, conn: ssl.SSLSocket, request: Request) -> None:
        extra = "".join(f' a{i}="x"' for i in range(ATTRIBUTES))
        self._pathological(conn, "", extra)

    def namespace_flood(self, conn: ssl.SSLSocket, request: Request) -> None:
        chains, depth = NESTED_CHAINS
        opening = "".join(
            f'<e{i} xmlns:a{i}="urn:a:{i}" xmlns:b{i}="urn:b:{i}" xmlns:c{i}="urn:c:{i}">'
            for i in range(depth)
        )
        closing = "".join(f"</e{i}>" for i in reversed(range(depth)))
        self._pathological(conn, (opening + closing) * chains)

    def deep_nesting(self, conn: ssl.SSLSocket, request: Request) -> None:
        depth = NESTING_DEPTH - 3  # KmsResponse and KmsMessage hold the chain
        self._pathological(conn, "<n>" * depth + "</n>" * depth)

    def huge_text(self, conn: ssl.SSLSocket, request: Request) -> None:
        self._pathological(conn, "<KmsInit>" + "A" * HUGE_TEXT_CHARS + "</KmsInit>")

    def many_elements(self, conn: ssl.SSLSocket, request: Request) -> None:
        self._pathological(conn, "<a/>" * ELEMENTS)

    def at_cap(self, conn: ssl.SSLSocket, request: Request) -> None:
        """The honest answer, padded with a trailing comment to one octet under the cap."""
        answer = self.upstream(request, self.base_url)
        room = MAX_BODY_BYTES - 1 - len(answer.body) - len("\n<!--  -->\n")
        padded = answer.body + b"\n<!-- " + b"p" * max(room, 0) + b" -->\n"
        _send_answer(conn, Answer(answer.status, answer.headers, padded))

    def set_cookie(self, conn: ssl.SSLSocket, request: Request) -> None:
        """The honest answer with two session cookies, on a connection kept open."""
        answer = self.upstream(request, self.base_url)
        value = "kmssession-" + secrets.token_hex(16)
        self.cookies_set.append(value)
        headers = (
            *answer.headers,
            ("Set-Cookie", f"session={value}; Path=/; HttpOnly"),
            ("Set-Cookie", f"tie={value}; Domain=127.0.0.1; Path=/keymanagement"),
        )
        body = answer.body
        lines = [
            f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Status')}",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in _content_headers(Answer(answer.status, headers, b""))]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


_BEHAVIOURS: dict[str, Callable[[HostileServer, ssl.SSLSocket, Request], None]] = {
    "xxe": HostileServer.xxe,
    "entity-bomb": HostileServer.entity_bomb,
    "big-body": HostileServer.big_body,
    "drip": HostileServer.drip,
    "drip-from-status-line": HostileServer.drip_from_status_line,
    "bad-utf8": HostileServer.bad_utf8,
    "text-content-type": HostileServer.text_content_type,
    "xml-content-type-not-xml": HostileServer.xml_content_type_not_xml,
    "redirect": HostileServer.redirect,
    "reset-mid-body": HostileServer.reset_mid_body,
    "http10-close-delimited": HostileServer.http10_close_delimited,
    "many-attributes": HostileServer.many_attributes,
    "namespace-flood": HostileServer.namespace_flood,
    "deep-nesting": HostileServer.deep_nesting,
    "huge-text": HostileServer.huge_text,
    "many-elements": HostileServer.many_elements,
    "at-cap": HostileServer.at_cap,
    "set-cookie": HostileServer.set_cookie,
}


def _listen(host: str) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(64)
    listener.settimeout(0.2)
    return listener


class _Reader:
    """HTTP/1.1 requests off one connection (Content-Length bodies only: the harness's)."""

    MAX_HEAD = 64 * 1024
    MAX_BODY = 1024 * 1024

    def __init__(self, conn: ssl.SSLSocket) -> None:
        self._conn = conn
        self._buffer = b""

    def request(self) -> Request | None:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > self.MAX_HEAD or not self._fill():
                return None
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = tuple(
            (name.strip(), value.strip())
            for name, value in (line.split(":", 1) for line in lines[1:] if ":" in line)
        )
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        if length > self.MAX_BODY:
            return None
        while len(self._buffer) < length:
            if not self._fill():
                return None
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Request(method, target, headers, body)

    def _fill(self) -> bool:
        data = self._conn.recv(65536)
        self._buffer += data
        return bool(data)


def _send_head(
    conn: ssl.SSLSocket, status: int, headers: list[tuple[str, str]], length: int
) -> None:
    conn.sendall(_head(status, headers, length))


def _send_answer(conn: ssl.SSLSocket, answer: Answer) -> None:
    conn.sendall(_head(answer.status, _content_headers(answer), len(answer.body)) + answer.body)


def _head(status: int, headers: list[tuple[str, str]], length: int) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        f"Content-Length: {length}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _content_headers(answer: Answer) -> list[tuple[str, str]]:
    # Framing headers are the server's own business; everything else is relayed.
    framing = {"content-length", "transfer-encoding", "connection", "keep-alive"}
    return [(k, v) for k, v in answer.headers if k.lower() not in framing]


_REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


# -- the target file ------------------------------------------------------------------------


def write_target(
    path: Path,
    base_url: str,
    ca_file: Path,
    upstream_target: dict[str, Any] | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
    max_body_bytes: int = MAX_BODY_BYTES,
    limits: dict[str, Any] | None = None,
) -> Path:
    """``path``: a target file for the hostile server. With the upstream's target file
    (parsed), its users, keys, PICS and PIXIT are kept: the relayed answers are theirs."""
    document: dict[str, Any] = dict(upstream_target or {})
    document["target"] = {
        "base_url": base_url,
        "ca_file": str(ca_file.resolve()),
        "verify_tls": True,
        "timeout_s": timeout_s,
        "max_body_bytes": max_body_bytes,
    }
    document.setdefault("profile", {"release": "ts33180-r17"})
    document.setdefault("pics", {"cert": True, "encryption": "none"})
    document.setdefault(
        "users", [{"uri": "sip:alice@hostile.test", "token": "hostile-test-token-0001"}]
    )
    if limits:
        document["limits"] = dict(limits)
    path.write_text(toml_text(document), encoding="utf-8")
    return path


@contextlib.contextmanager
def serving(
    mode: str,
    directory: Path,
    upstream: Upstream | None = None,
    upstream_target: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
) -> Iterator[tuple[HostileServer, Path]]:
    """The hostile server in ``mode`` with its PKI, canary and target file under ``directory``."""
    pki = make_pki(directory / "pki")
    canary = directory / "canary.txt"
    if not canary.exists():
        canary.write_text("canary-" + secrets.token_hex(24) + "\n", encoding="ascii")
    with HostileServer(mode, pki, canary, upstream) as server:
        base_url = server.base_url + API_PREFIX.rstrip("/")
        target = write_target(
            directory / "target.toml", base_url, pki.ca_file, upstream_target, limits=limits
        )
        yield server, target


if __name__ == "__main__":  # pragma: no cover - a manual tool
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} MODE DIR   (modes: {', '.join(MODES)})", file=sys.stderr)
        sys.exit(2)
    with serving(sys.argv[1], Path(sys.argv[2])) as (hostile, target_file):
        print(f"{hostile.mode} on {hostile.base_url}; target file {target_file}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
