"""The probe: builds each KMS request type from a case step and records the exchange.

One ``Probe`` per target and run. ``send(step)`` turns one step of ``testcases/*.yaml``
(testcases/FORMAT.md) into an HTTP request, sends it and returns the recorded
``Exchange``; target misbehaviour (timeouts, TLS failures, refused connections, oversized
or cut bodies) is recorded in ``Exchange.error`` with a one-line reason, never raised.
Only two things are raised: ``MissingInput`` when the target file lacks a PIXIT input the
step needs (the case is n/a) and ``PreconditionFailed`` when a preliminary exchange the
step depends on failed (the case is inconc).

Requests (kms-interface.md section 3, DESIGN.md section 7): every type is a POST under the
target's ``base_url``; identities in the path are one percent-encoded segment. Bodies
(section 4): ``KmsRequest`` in the profile namespace and order, or ``SignedKmsRequest`` =
``KmsRequest`` (with ``Id``) followed by its sibling ``ds:Signature`` (Reference ``#Id``,
no enveloped-signature transform since the Signature lies outside what it signs;
HMAC-SHA256, C14N 1.0, SHA-256, ``KeyName`` = base64 key ID), signed with the InK when the
user has one, else the TrK, as refkms/requests.py reads it.

Every exchange, preliminary ones included, is appended to ``Probe.exchanges`` in order.
The request headers are recorded as sent, Authorization included: the engine redacts a
case's exchanges when it has finished (report.redact.Capture, DESIGN.md section 6).
Nothing here logs or prints a secret.

Each exchange has one deadline, ``timeout_s`` after it starts: connect, TLS handshake,
writes and every read get at most what remains of it, so a target that drips a byte at a
time cannot keep an exchange alive past ``timeout_s``.
"""

from __future__ import annotations

import base64
import http.cookiejar
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpcore
import httpx
from cryptography import x509
from lxml import etree

from conformance import __version__
from conformance.auth import credential_headers, has_own_certificate, other_means, tls_context
from conformance.crypto import CryptoError, xmldsig, xmlenc
from conformance.crypto.periods import encode_ntp_time, key_period_no, ntp_seconds, period_start
from conformance.exchange import Exchange, RecordedRequest, TlsFacts
from conformance.model import (
    EncryptedContent,
    KmsCertCache,
    KmsCertificate,
    KmsInit,
    MessageContent,
    NotAKmsResponse,
    parse_message_content,
    parse_response,
)
from conformance.profiles import Profile
from conformance.target import Target, User
from conformance.xmlsafe import XmlRejected, hardened_parser, parse_xml

REQUEST_TYPES: Final = ("init", "keyprov", "certcache", "cert", "lookup", "redirect", "raw")
TOKEN_VARIANTS: Final = (
    "valid",
    "none",
    "expired",
    "wrong_scope",
    "malformed",
    "bad_signature",
    "other_user",
)
BODY_VARIANTS: Final = (
    "none",
    "request",
    "signed",
    "signed-ink",
    "signed-trk",
    "signed-wrong-key",
    "signed-wrong-id",
    "bad-signature",
    "malformed",
    "junk",
    "extension",
    "krrlist",
    "bad-krrlist",
)
KMS_REQUEST_VERSION: Final = "1.1.0"
EXTENSION_NS: Final = "urn:example:ext"
JUNK_OCTETS: Final = 1024 * 1024
# Time overrides of the "stale"/"future" kind sit a day away: beyond any freshness window.
TIME_SHIFT: Final = timedelta(days=1)
RANDOM_KEY_OCTETS: Final = 32
RANDOM_KEY_ID_OCTETS: Final = 16

_SIGNED_VARIANTS: Final = frozenset(
    {"signed", "signed-ink", "signed-trk", "signed-wrong-key", "signed-wrong-id", "bad-signature"}
)
_NEGATIVE_TOKENS: Final = ("expired", "wrong_scope", "malformed", "bad_signature")
_RAW_TARGET: Final = "kms_conformance.raw_target"
_IDENTITY: Final = "kms_conformance.identity"
_MAX_ERROR_CHARS: Final = 300
# A raw path goes out as written, except what cannot stand in a request line.
_VISIBLE_ASCII: Final = "".join(chr(code) for code in range(0x21, 0x7F))


class MissingInput(Exception):
    """A PIXIT input the step needs is absent from the target file: the case is n/a."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"needs {what}")


class PreconditionFailed(Exception):
    """A preliminary exchange the step needs failed: the case is inconc (one-line message)."""


class Probe:
    """An HTTP client for one target that speaks the KMS request types of a case step."""

    def __init__(
        self,
        target: Target,
        profile: Profile,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.target = target
        self.profile = profile
        self.exchanges: list[Exchange] = []
        self._clock = clock or (lambda: datetime.now(UTC))
        settings = target.target
        self._timeout_s = settings.timeout_s
        self._max_body = settings.max_body_bytes
        self._in_process = transport is not None
        self._setup_error: str | None = None
        self._deadline_transport: _DeadlineTransport | None = None
        if transport is None:
            try:
                context = _ssl_context(target)
            except (OSError, ssl.SSLError, ValueError) as exc:
                # Reported on every exchange: the constructor must not raise for the target.
                self._setup_error = f"TLS: cannot set up the client: {_flat(str(exc))}"
                context = ssl.create_default_context()
            self._deadline_transport = _DeadlineTransport(context)
            transport = self._deadline_transport
        # No state between requests that a case does not ask for (DESIGN.md 9): cookies a
        # target sets are never stored nor sent back, redirects are never followed, and
        # each identity has its own connections (_DeadlineTransport).
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(self._timeout_s),
            follow_redirects=False,
            trust_env=False,
            cookies=_NoCookies(),
        )
        # Users with a TLS client certificate of their own get a connection pool each.
        self._user_clients: dict[int, tuple[httpx.Client, _DeadlineTransport]] = {}
        self._init_body: bytes | None = None
        self._init_done = False
        self._held: dict[int, User] = {}
        self._init_certificate: KmsCertificate | None = None

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()
        for client, _transport in self._user_clients.values():
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- one method per request type (each builds a step and calls send) ---------------

    def init(self, **options: Any) -> Exchange:
        return self._step("init", {}, options)

    def keyprov(self, uri: str | None = None, time: str | None = None, **options: Any) -> Exchange:
        return self._step("keyprov", {"uri": uri, "time": time}, options)

    def certcache(self, number: int | str | None = None, **options: Any) -> Exchange:
        return self._step("certcache", {"number": number}, options)

    def cert(self, kms_uri: str = "own", **options: Any) -> Exchange:
        return self._step("cert", {"uri": kms_uri}, options)

    def lookup(self, sip_uri: str = "known", **options: Any) -> Exchange:
        return self._step("lookup", {"uri": sip_uri}, options)

    def redirect(self, body: str = "krrlist", **options: Any) -> Exchange:
        return self._step("redirect", {"body": body}, options)

    def raw(self, method: str, path: str, **options: Any) -> Exchange:
        return self._step("raw", {"method": method, "path": path}, options)

    # -- the engine's entry points ---------------------------------------------------

    def send(self, step: Mapping[str, Any], label: str = "step1") -> Exchange:
        """Build the request ``step`` describes, send it, record and return the exchange.

        Raises only ``MissingInput`` and ``PreconditionFailed``; a step the probe cannot
        build (an unknown request type or variant) is an exchange with ``error_kind``
        "usage" that was never sent.
        """
        try:
            prepared = self._prepare(step, label)
            request = self._build(prepared)
        except _StepError as problem:
            return self._record(_unsent(label, step, str(problem)))
        return self._record(self._exchange(label, prepared, request))

    def resend(
        self,
        label: str,
        *,
        method: str,
        path: str,
        body: bytes,
        token_variant: str = "valid",
        user: int = 1,
        scheme: str = "https",
    ) -> Exchange:
        """Send a recorded request again (``kms-conformance replay``): the same method,
        path and body bytes, to this probe's target, with a fresh token of the recorded
        variant. Raises ``MissingInput`` when that token is not in the target file."""
        origin = urlsplit(self.target.target.base_url)
        url = f"{scheme}://{origin.netloc}{path}"
        headers = {
            "User-Agent": f"kms-conformance/{__version__}",
            "Accept": "application/xml",
            "Accept-Encoding": "identity",
        }
        token = self._token(token_variant, user)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        credential_no = self._credential_user(token_variant, user)
        credentials = credential_headers(self.target, self._user(credential_no))
        headers.update(credentials)
        if body:
            headers["Content-Type"] = "application/xml"
        prepared = _Prepared(
            method.upper(),
            url,
            path.encode("ascii", "replace"),
            headers,
            body,
            token_variant,
            "recorded",
            ["replayed from recorded evidence"],
            credential_user=credential_no,
            identity=_identity(token_variant, credential_no, bool(credentials)),
        )
        try:
            request = self._build(prepared)
        except _StepError as problem:
            step = {"request": "raw", "method": method, "path": path}
            return self._record(_unsent(label, step, str(problem)))
        return self._record(self._exchange(label, prepared, request))

    def init_response(self) -> bytes | None:
        """The body of one valid KMS Initialize (user 1, valid token), fetched once.

        None when that exchange failed (no answer, or a status other than 200). Raises
        ``MissingInput`` when user 1 has no token.
        """
        if not self._init_done:
            # The run-wide preliminary init is made with the target file's keys.
            held, self._held = self._held, {}
            try:
                exchange = self.send({"request": "init"}, "init-preliminary")
            finally:
                self._held = held
            self._init_done = True
            if exchange.answered and exchange.status == 200 and not exchange.truncated:
                self._init_body = exchange.body
                content = self._message_content(exchange.body, self.target.users[0])
                if isinstance(content, KmsInit) and content.certificates:
                    self._init_certificate = content.certificates[0]
        return self._init_body

    def init_certificate(self) -> KmsCertificate | None:
        """The KmsCertificate of that init response (decrypted if need be), or None."""
        self.init_response()
        return self._init_certificate

    def kms_uri(self) -> str | None:
        """``pixit.kms_uri``, else the KmsUri of the certificate in the init response."""
        if self.target.pixit.kms_uri:
            return self.target.pixit.kms_uri
        certificate = self.init_certificate()
        return certificate.kms_uri if certificate is not None and certificate.kms_uri else None

    # -- building a request ------------------------------------------------------------

    def _step(self, request: str, given: dict[str, Any], options: dict[str, Any]) -> Exchange:
        label = str(options.pop("label", "step1"))
        step = {"request": request, **{k: v for k, v in given.items() if v is not None}}
        step.update({k: v for k, v in options.items() if v is not None})
        return self.send(step, label)

    def _prepare(self, step: Mapping[str, Any], label: str) -> _Prepared:
        kind = step.get("request")
        if kind not in REQUEST_TYPES:
            raise _StepError(f"unknown request type {kind!r} (known: {', '.join(REQUEST_TYPES)})")
        user_no = _user_number(step.get("user", 1))
        user = self._user(user_no)
        method = str(step.get("method", "POST")).upper()
        token_variant = str(step.get("token", "valid"))
        body_variant = str(step.get("body", "none"))
        if body_variant not in BODY_VARIANTS:
            raise _StepError(f"unknown body {body_variant!r} (known: {', '.join(BODY_VARIANTS)})")
        notes: list[str] = []
        url, raw_target = self._url(kind, step, user_no, user, label=label, notes=notes)
        headers = {
            "User-Agent": f"kms-conformance/{__version__}",
            "Accept": "application/xml",
            # Compressed answers would be recorded undecoded, and a gzip bomb is no fun.
            "Accept-Encoding": "identity",
        }
        token = self._token(token_variant, user_no)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        credential_no = self._credential_user(token_variant, user_no)
        credentials = credential_headers(self.target, self._user(credential_no))
        headers.update(credentials)
        fields = step.get("fields") or {}
        if not isinstance(fields, Mapping):
            raise _StepError("fields must be a mapping of KmsRequest element names to values")
        body = self._body(body_variant, user_no, user, url, fields)
        if body_variant != "none":
            headers["Content-Type"] = "application/xml"
        return _Prepared(
            method,
            url,
            raw_target,
            headers,
            body,
            token_variant,
            body_variant,
            notes,
            credential_user=credential_no,
            identity=_identity(token_variant, credential_no, bool(credentials)),
        )

    def _url(
        self,
        kind: str,
        step: Mapping[str, Any],
        user_no: int,
        user: User,
        *,
        label: str,
        notes: list[str],
    ) -> tuple[str, bytes | None]:
        base = self.target.target.base_url
        raw_target: bytes | None = None
        if kind == "init":
            url = f"{base}/init"
        elif kind == "keyprov":
            url = f"{base}/keyprov" + self._keyprov_segments(step, user_no, user, notes)
        elif kind == "certcache":
            url = f"{base}/certcache" + self._certcache_segment(step, user_no, label)
        elif kind == "cert":
            url = f"{base}/cert/" + _segment(self._cert_uri(str(step.get("uri", "own"))))
        elif kind == "lookup":
            url = f"{base}/lookup/" + _segment(self._lookup_uri(str(step.get("uri", "known"))))
        elif kind == "redirect":
            url = f"{base}/redirect"
        else:
            path = step.get("path")
            if not isinstance(path, str) or not path:
                raise _StepError("a raw request needs a path")
            path = quote(path if path.startswith("/") else "/" + path, safe=_VISIBLE_ASCII)
            parts = urlsplit(base)
            url = urlunsplit((parts.scheme, parts.netloc, "", "", "")) + path
            raw_target = path.encode("ascii")
        scheme = str(step.get("scheme", "https")).lower()
        if scheme not in ("https", "http"):
            raise _StepError(f"scheme {scheme!r} is not https or http")
        if scheme == "http":
            parts = urlsplit(url)
            if parts.scheme != "http":
                # Same host and port: what a plain-HTTP client would reach on that port.
                url = urlunsplit(("http", parts.netloc, parts.path, parts.query, ""))
        return url, raw_target

    def _keyprov_segments(
        self, step: Mapping[str, Any], user_no: int, user: User, notes: list[str]
    ) -> str:
        uri_value = str(step.get("uri", "none"))
        time_value = step.get("time")
        if uri_value == "none" and time_value is None:
            return ""
        if uri_value == "none":
            uri_value = "self"
            notes.append("the time form needs a URI: sent for the sender's own URI")
        if uri_value == "self":
            uri = user.uri
        elif uri_value == "other":
            uri = self._user(2 if user_no == 1 else 1).uri
        else:
            uri = uri_value
        segments = "/" + _segment(uri)
        if time_value is not None:
            segments += "/" + _segment(self._keyprov_time(str(time_value)))
        return segments

    def _keyprov_time(self, value: str) -> str:
        if value == "now":
            return encode_ntp_time(ntp_seconds(self._now()))
        if value not in ("next-period", "previous-period"):
            return value  # a literal: sent as given, malformed ones included
        certificate = self._certificate_for_periods()
        try:
            period = int(certificate.get("UserKeyPeriod") or "")
            offset = int(certificate.get("UserKeyOffset") or "0")
            current = key_period_no(self._now(), period, offset)
            step = 1 if value == "next-period" else -1
            start = period_start(current + step, period, offset) + timedelta(seconds=1)
            return encode_ntp_time(ntp_seconds(start))
        except (ValueError, CryptoError) as exc:
            raise PreconditionFailed(
                f"the init certificate's UserKeyPeriod/UserKeyOffset are unusable: {exc}"
            ) from None

    def _certificate_for_periods(self) -> KmsCertificate:
        body = self.init_response()
        if body is None:
            raise PreconditionFailed("KMS Initialize failed, so the key period is unknown")
        if self._init_certificate is None:
            raise PreconditionFailed("the KMS Initialize response holds no readable KmsCertificate")
        return self._init_certificate

    def _certcache_segment(self, step: Mapping[str, Any], user_no: int, label: str) -> str:
        number = step.get("number")
        if number is None:
            return ""
        if number != "current":
            return "/" + _segment(str(number))
        step_user = {"user": user_no}
        preliminary = self.send({"request": "certcache", **step_user}, f"{label}-preliminary")
        what = "the preliminary KMS CertCache"
        if not preliminary.answered or preliminary.truncated:
            raise PreconditionFailed(f"{what} failed: {preliminary.error or 'no answer'}")
        if preliminary.status != 200:
            raise PreconditionFailed(f"{what} answered HTTP {preliminary.status}")
        content = self._message_content(preliminary.body, self._user(user_no))
        if not isinstance(content, KmsCertCache):
            raise PreconditionFailed(f"{what} holds no readable KmsCertCache")
        cache_num = (content.attr("CacheNum") or "").strip()
        if not cache_num:
            raise PreconditionFailed(f"{what}'s KmsCertCache has no CacheNum")
        return "/" + _segment(cache_num)

    def _cert_uri(self, value: str) -> str:
        if value == "own":
            return self._required_kms_uri()
        if value == "partner":
            if not self.target.pixit.partner_kms_uris:
                raise MissingInput("pixit.partner_kms_uris")
            return self.target.pixit.partner_kms_uris[0]
        if value == "unknown":
            return self.target.pixit.unknown_kms_uri
        return value

    def _lookup_uri(self, value: str) -> str:
        if value == "known":
            if not self.target.pixit.lookup:
                raise MissingInput("pixit.lookup")
            return self.target.pixit.lookup[0].sip_uri
        if value == "partner":
            # The first entry served by another KMS: only there does a KMS that answers its
            # own URI for every SIP URI show.
            own = self.kms_uri()
            for entry in self.target.pixit.lookup:
                if entry.kms_uri != own:
                    return entry.sip_uri
            raise MissingInput("pixit.lookup entry served by another KMS")
        if value == "unknown":
            return self.target.pixit.unknown_sip_uri
        return value

    def _required_kms_uri(self) -> str:
        uri = self.kms_uri()
        if uri is not None:
            return uri
        if self._init_body is None:
            raise PreconditionFailed(
                "KMS Initialize failed, so the KMS URI is unknown (pixit.kms_uri would avoid it)"
            )
        raise MissingInput("pixit.kms_uri")

    def _token(self, variant: str, user_no: int) -> str | None:
        if variant == "none":
            if not self.target.bearer:
                means = other_means(self.target, self._user(user_no)) or "other means"
                raise MissingInput(
                    f"Bearer tokens (the target identifies users by {means}, so a request "
                    "without a token is not an unauthenticated one)"
                )
            return None
        if variant in ("valid", "other_user"):
            owner_no = user_no if variant == "valid" else (2 if user_no == 1 else 1)
            owner = self._user(owner_no)
            if owner.token is None:
                if other_means(self.target, owner):
                    return None  # the identity header or client certificate says who
                raise MissingInput(f"users[{owner_no}].token")
            return owner.token.text()
        if variant in _NEGATIVE_TOKENS:
            negative = getattr(self.target.tokens, variant)
            if negative is None:
                raise MissingInput(f"tokens.{variant}")
            return str(negative.text())
        raise _StepError(f"unknown token {variant!r} (known: {', '.join(TOKEN_VARIANTS)})")

    @staticmethod
    def _credential_user(variant: str, user_no: int) -> int:
        """Whose credentials (headers, client certificate) a request carries."""
        return (2 if user_no == 1 else 1) if variant == "other_user" else user_no

    def _client_for(self, user_no: int) -> tuple[httpx.Client, _DeadlineTransport | None]:
        """The client whose TLS identity is that user's (its own certificate, if any)."""
        user = self._user(user_no)
        if self._in_process or not has_own_certificate(user) or self._setup_error:
            return self._client, self._deadline_transport
        if user_no not in self._user_clients:
            transport = _DeadlineTransport(tls_context(self.target, user))
            client = httpx.Client(
                transport=transport,
                timeout=httpx.Timeout(self._timeout_s),
                follow_redirects=False,
                trust_env=False,
                cookies=_NoCookies(),
            )
            self._user_clients[user_no] = (client, transport)
        return self._user_clients[user_no]

    def _body(
        self, variant: str, user_no: int, user: User, url: str, fields: Mapping[str, Any]
    ) -> bytes:
        if variant == "none":
            return b""
        if variant == "junk":
            return _junk()
        builder = _RequestBuilder(self.profile, self._now())
        values: dict[str, Any] = {
            "UserUri": user.uri,
            "KmsUri": self._required_kms_uri(),
            "Time": _xsd_date_time(builder.now),
            "ClientReqUrl": url,
        }
        if self.profile.has_trk_id_elements and user.trk is not None:
            values["TrK-ID"] = user.trk.key_id_b64
        if variant == "krrlist":
            values["KrrList"] = _krr_list(self.profile, well_formed=True)
        elif variant == "bad-krrlist":
            values["KrrList"] = _krr_list(self.profile, well_formed=False)
        signing = _signing_plan(variant, user_no, user) if variant in _SIGNED_VARIANTS else None
        if signing is not None and self.profile.has_trk_id_elements:
            values["Signature-ID"] = _b64(signing.key_id)
        builder.apply_overrides(values, fields)
        request = builder.kms_request(values, extension=variant == "extension")
        if variant == "malformed":
            return _cut_in_an_element(_serialize(request))
        if signing is None:
            return _serialize(request)
        return _serialize(builder.signed(request, signing))

    # -- sending -----------------------------------------------------------------------

    def _build(self, prepared: _Prepared) -> httpx.Request:
        extensions: dict[str, Any] = {_IDENTITY: prepared.identity}
        if prepared.raw_target:
            extensions[_RAW_TARGET] = prepared.raw_target
        try:
            return self._client.build_request(
                prepared.method,
                prepared.url,
                content=prepared.body,
                headers=prepared.headers,
                extensions=extensions,
            )
        except httpx.InvalidURL as exc:
            raise _StepError(_flat(f"the request URL is not usable: {exc}")) from None
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            # Only the exception type: a header value (a token) may be in its message.
            raise _StepError(f"the request could not be built ({type(exc).__name__})") from None

    def _exchange(self, label: str, prepared: _Prepared, request: httpx.Request) -> Exchange:
        # Only our own transport sends a raw path verbatim; httpx normalizes it otherwise.
        verbatim = prepared.raw_target if not self._in_process else None
        path = (verbatim or request.url.raw_path).decode("ascii", "replace")
        exchange = Exchange(
            label,
            RecordedRequest(
                method=prepared.method,
                url=prepared.url if verbatim else str(request.url),
                path=path,
                headers=tuple(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ),
                body=prepared.body,
                token_variant=prepared.token_variant,
                body_variant=prepared.body_variant,
            ),
            notes=list(prepared.notes),
        )
        if self._setup_error is not None and request.url.scheme == "https":
            exchange.error, exchange.error_kind = self._setup_error, "tls"
            return exchange
        started = time.monotonic()
        deadline = started + self._timeout_s
        try:
            client, deadline_transport = self._client_for(prepared.credential_user)
        except (OSError, ssl.SSLError, ValueError) as exc:
            exchange.error = f"TLS: cannot load the client certificate: {_flat(str(exc))}"
            exchange.error_kind = "tls"
            return exchange
        if deadline_transport is not None:
            deadline_transport.backend.deadline = deadline
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
                if not self._in_process:
                    exchange.tls = _tls_facts(response)
                in_body = True
                self._read_body(response, exchange, deadline)
            finally:
                response.close()
        except Exception as exc:  # every failure becomes a one-line record, never a traceback
            exchange.error_kind, exchange.error = _classify(exc, self._timeout_s, in_body)
        exchange.elapsed_s = time.monotonic() - started
        if exchange.header("content-encoding") not in (None, "identity"):
            exchange.notes.append(
                "the response has a Content-Encoding although identity was asked for; "
                "the body is recorded undecoded"
            )
        return exchange

    def _read_body(self, response: httpx.Response, exchange: Exchange, deadline: float) -> None:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in _raw_chunks(response):
                chunks.append(chunk)
                size += len(chunk)
                if size > self._max_body:
                    exchange.truncated = True
                    exchange.error = f"response body exceeds {self._max_body} bytes"
                    exchange.error_kind = "too-large"
                    break
                if time.monotonic() > deadline:
                    exchange.error = f"response body not complete within {self._timeout_s:g} s"
                    exchange.error_kind = "timeout"
                    break
        finally:
            # What arrived before a failure is evidence too.
            exchange.body = b"".join(chunks)[: self._max_body]

    def _record(self, exchange: Exchange) -> Exchange:
        self.exchanges.append(exchange)
        return exchange

    # -- reading what the KMS sent ----------------------------------------------------------

    def _message_content(self, body: bytes, user: User) -> MessageContent | None:
        """The KmsMessage content of a response, decrypted with the user's TrK if needed."""
        try:
            response = parse_response(
                parse_xml(body, max_bytes=self._max_body, limits=self.target.limits),
                self.profile.namespace,
            )
        except (XmlRejected, NotAKmsResponse):
            return None
        content = response.kms_message.content if response.kms_message else None
        if not isinstance(content, EncryptedContent):
            return content
        if user.trk is None:
            return None
        try:
            plaintext = xmlenc.decrypt_content(content.element, user.trk.key.reveal())
            nodes = xmlenc.parse_plaintext_fragment(content.element, plaintext, hardened_parser())
        except (CryptoError, etree.XMLSyntaxError, ValueError):
            return None
        for node in nodes:
            if isinstance(node.tag, str):
                return parse_message_content(node, self.profile.namespace)
        return None

    # -- small helpers -------------------------------------------------------------------

    def hold(self, users: Mapping[int, User] | None) -> None:
        """The keys the UE holds in the running case (conformance.uestate), by user number:
        requests name and sign with them. None: the keys of the target file."""
        self._held = dict(users or {})

    def _user(self, number: int) -> User:
        if not 1 <= number <= len(self.target.users):
            raise MissingInput(f"users[{number}]")
        return self._held.get(number) or self.target.users[number - 1]

    def _now(self) -> datetime:
        now = self._clock()
        return now if now.utcoffset() is not None else now.replace(tzinfo=UTC)


# -- request bodies ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    method: str
    url: str
    raw_target: bytes | None
    headers: dict[str, str]
    body: bytes
    token_variant: str
    body_variant: str
    notes: list[str] = field(default_factory=list)
    identity: str = "anonymous"  # whose connections the request may use
    credential_user: int = 1


def _identity(token_variant: str, credential_no: int, has_credentials: bool) -> str:
    """The credential set a request carries: requests of different identities never share
    a connection (a tokenless case must not ride on one that carried a token). Identity
    headers of the credential user make a tokenless request that user's."""
    carries = token_variant != "none" or has_credentials
    return f"user{credential_no}:{token_variant}" if carries else "anonymous"


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that never stores a cookie, so none is ever sent back."""

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


@dataclass(frozen=True)
class _SigningPlan:
    key: bytes = field(repr=False)
    key_id: bytes  # what Signature-ID and ds:KeyName name
    flip_signature: bool = False


class _StepError(Exception):
    """A step the probe cannot build: a catalogue or engine bug, not a target problem."""


def _unsent(label: str, step: Mapping[str, Any], problem: str) -> Exchange:
    return Exchange(
        label,
        RecordedRequest(
            method=str(step.get("method", "POST")),
            url="",
            path="",
            headers=(),
            body=b"",
            token_variant=str(step.get("token", "valid")),
            body_variant=str(step.get("body", "none")),
        ),
        error=problem,
        error_kind="usage",
    )


class _RequestBuilder:
    def __init__(self, profile: Profile, now: datetime) -> None:
        self.profile = profile
        self.now = now
        self.ns = profile.namespace

    def apply_overrides(self, values: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for key, value in fields.items():
            name, text = str(key), str(value)
            if text == "omit":
                values.pop(name, None)
            elif name == "Time" and text == "stale":
                values[name] = _xsd_date_time(self.now - TIME_SHIFT)
            elif name == "Time" and text == "future":
                values[name] = _xsd_date_time(self.now + TIME_SHIFT)
            elif name == "TrK-ID" and text == "unknown":
                values[name] = _b64(secrets.token_bytes(RANDOM_KEY_ID_OCTETS))
            else:
                values[name] = text

    def kms_request(self, values: Mapping[str, Any], *, extension: bool) -> etree._Element:
        request = etree.Element(self._tag("KmsRequest"), nsmap={None: self.ns})  # type: ignore[dict-item]
        request.set("Version", KMS_REQUEST_VERSION)
        ordered = [n for n in self.profile.request_child_order if n in values]
        ordered += [n for n in values if n not in self.profile.request_child_order]
        for name in ordered:
            value = values[name]
            if isinstance(value, etree._Element):
                request.append(value)
            else:
                etree.SubElement(request, self._tag(name)).text = str(value)
        if extension:
            etree.SubElement(request, f"{{{EXTENSION_NS}}}Foo", nsmap={"x": EXTENSION_NS})
        return request

    def signed(self, request: etree._Element, plan: _SigningPlan) -> etree._Element:
        wrapper = etree.Element(self._tag("SignedKmsRequest"), nsmap={None: self.ns})  # type: ignore[dict-item]
        wrapper.append(request)
        signature = xmldsig.sign(
            request, plan.key, plan.key_id, id_value=f"kmsreq-{secrets.token_hex(6)}"
        )
        if plan.flip_signature:
            value = signature.find(f"{{{xmldsig.DS_NS}}}SignatureValue")
            assert value is not None
            octets = bytearray(xmldsig.decode_base64(value.text, "SignatureValue"))
            octets[0] ^= 0x01
            value.text = _b64(bytes(octets))
        return wrapper

    def _tag(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"


def _signing_plan(variant: str, user_no: int, user: User) -> _SigningPlan:
    trk, ink = user.trk, user.ink
    if variant == "signed-ink":
        if ink is None:
            raise MissingInput(f"users[{user_no}].ink")
        return _SigningPlan(ink.key.reveal(), ink.key_id)
    if variant == "signed-trk":
        if trk is None:
            raise MissingInput(f"users[{user_no}].trk")
        return _SigningPlan(trk.key.reveal(), trk.key_id)
    # D.2.2: the InK signs when there is one, else the TrK.
    chosen = ink or trk
    if chosen is None:
        raise MissingInput(f"users[{user_no}].trk")
    if variant == "signed-wrong-key":
        return _SigningPlan(secrets.token_bytes(RANDOM_KEY_OCTETS), chosen.key_id)
    if variant == "signed-wrong-id":
        other = trk if chosen is ink else None
        wrong_id = other.key_id if other is not None else secrets.token_bytes(RANDOM_KEY_ID_OCTETS)
        return _SigningPlan(chosen.key.reveal(), wrong_id)
    flip = variant == "bad-signature"
    return _SigningPlan(chosen.key.reveal(), chosen.key_id, flip_signature=flip)


def _krr_list(profile: Profile, *, well_formed: bool) -> etree._Element:
    krr_list = etree.Element(f"{{{profile.namespace}}}KrrList")
    if well_formed:
        # D.4.4's element names could not be read (schemas/krr): one empty KRR root element
        # is what the open KRR content model certainly accepts.
        etree.SubElement(
            krr_list,
            f"{{{profile.krr_namespace}}}KmsRedirectResponse",
            nsmap={"krr": profile.krr_namespace},
        )
    else:
        krr_list.text = "not a KMS Redirect Response"
    return krr_list


def _cut_in_an_element(document: bytes) -> bytes:
    # Inside the KmsUri start tag when there is one: unmistakably not well-formed.
    cut = document.find(b"<KmsUri")
    return document[: cut + 4] if cut >= 0 else document[: len(document) // 2]


_JUNK_PATTERN: Final = b"\xff\xfe junk \x00 not XML \x01\x02\x03 "


def _junk() -> bytes:
    repeats = JUNK_OCTETS // len(_JUNK_PATTERN) + 1
    return (_JUNK_PATTERN * repeats)[:JUNK_OCTETS]


def _serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")


def _xsd_date_time(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _segment(value: str) -> str:
    """One path segment: ':' -> %3A, '@' -> %40, '/' -> %2F (kms-interface.md 3.2)."""
    return quote(value, safe="")


def _user_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _StepError(f"user must be a 1-based number, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise _StepError(f"user must be a 1-based number, not {value!r}") from None


# -- transport -----------------------------------------------------------------------------


def _ssl_context(target: Target) -> ssl.SSLContext:
    return tls_context(target)


class _DeadlineTransport(httpx.BaseTransport):
    """httpcore's HTTP/1.1 pool on a network backend that enforces one deadline per exchange.

    A raw request path travels in the request extension ``_RAW_TARGET`` and is sent as is
    (httpx would remove dot segments, which some probes must send).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.backend = _DeadlineBackend()
        self._context = context
        # One pool per identity (the request extension _IDENTITY): keep-alive within an
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
        raw_target = request.extensions.get(_RAW_TARGET)
        target = raw_target if isinstance(raw_target, bytes) else request.url.raw_path
        identity = str(request.extensions.get(_IDENTITY, "anonymous"))
        extensions = {
            k: v for k, v in request.extensions.items() if k not in (_RAW_TARGET, _IDENTITY)
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


def _raw_chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_raw()
    except httpx.StreamConsumed:
        # In-process transports may hand over a response whose body is already read.
        yield response.content


def _tls_facts(response: httpx.Response) -> TlsFacts | None:
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


def _classify(exc: BaseException, timeout_s: float, in_body: bool) -> tuple[str, str]:
    """(error_kind, one-line error) of a failed exchange."""
    if isinstance(exc, httpx.TimeoutException | httpcore.TimeoutException | socket.timeout):
        phase = next(
            (name for kinds, name in _TIMEOUT_PHASES if isinstance(exc, kinds)),
            "reading the response body" if in_body else "waiting for the response",
        )
        return "timeout", f"no complete answer within {timeout_s:g} s (timed out {phase})"
    tls_error = _ssl_cause(exc)
    if tls_error is not None:
        return "tls", _flat(f"TLS: {_describe_ssl(tls_error)}")
    if isinstance(exc, httpx.ConnectError | httpcore.ConnectError):
        return "connect", _flat(f"cannot connect: {_cause_text(exc)}")
    if isinstance(exc, httpx.RemoteProtocolError | httpcore.RemoteProtocolError):
        where = "connection closed mid-body" if in_body else "protocol error"
        return "protocol", _flat(f"{where}: {_cause_text(exc)}")
    if isinstance(exc, httpx.ReadError | httpcore.ReadError):
        where = "connection failed mid-body" if in_body else "reading the response failed"
        return "protocol", _flat(f"{where}: {_cause_text(exc)}")
    if isinstance(exc, httpx.WriteError | httpcore.WriteError):
        return "protocol", _flat(f"sending the request failed: {_cause_text(exc)}")
    if isinstance(exc, httpx.LocalProtocolError | httpcore.LocalProtocolError):
        # Not the message: h11 quotes the offending header, which may be the token.
        return "usage", "the request could not be sent: HTTP/1.1 refuses one of its headers"
    if isinstance(exc, httpx.UnsupportedProtocol | httpcore.UnsupportedProtocol):
        return "usage", _flat(f"the request could not be sent: {_cause_text(exc)}")
    return "protocol", _flat(f"{type(exc).__name__}: {_cause_text(exc)}")


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


def _flat(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_ERROR_CHARS else flat[: _MAX_ERROR_CHARS - 3] + "..."
