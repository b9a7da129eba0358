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
time cannot keep an exchange alive past ``timeout_s``. Bodies and tokens are built in
bodies.py, the transport and its deadline live in transport.py.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from conformance import __version__
from conformance.core.exchange import Exchange, RecordedRequest
from conformance.crypto import CryptoError
from conformance.crypto.periods import encode_ntp_time, key_period_no, ntp_seconds, period_start
from conformance.model.messages import (
    KmsCertCache,
    KmsCertificate,
    KmsInit,
    MessageContent,
)
from conformance.probe.bodies import (
    TOKEN_VARIANTS,
    MissingInput,
    PreconditionFailed,
    PreparedRequest,
    StepError,
    bearer_token,
    credential_user,
    identity_of,
    path_segment,
    read_message_content,
    request_body,
    unsent_exchange,
    user_number,
)
from conformance.probe.transport import (
    IDENTITY_EXTENSION,
    RAW_TARGET,
    DeadlineTransport,
    ExchangeBounds,
    new_client,
    one_line,
    ssl_context_for,
    transfer,
)
from conformance.profiles import Profile
from conformance.target.auth import credential_headers, has_own_certificate, tls_context
from conformance.target.file import Target, User

__all__ = [
    "BODY_VARIANTS",
    "REQUEST_TYPES",
    "TOKEN_VARIANTS",
    "MissingInput",
    "PreconditionFailed",
    "Probe",
]

REQUEST_TYPES: Final = ("init", "keyprov", "certcache", "cert", "lookup", "redirect", "raw")
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
# Time overrides of the "stale"/"future" kind sit a day away: beyond any freshness window.

# A raw path goes out as written, except what cannot stand in a request line.
_VISIBLE_ASCII: Final = "".join(chr(code) for code in range(0x21, 0x7F))


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
        self._deadline_transport: DeadlineTransport | None = None
        if transport is None:
            try:
                context = ssl_context_for(target)
            except (OSError, ssl.SSLError, ValueError) as exc:
                # Reported on every exchange: the constructor must not raise for the target.
                self._setup_error = f"TLS: cannot set up the client: {one_line(str(exc))}"
                context = ssl.create_default_context()
            self._deadline_transport = DeadlineTransport(context)
            transport = self._deadline_transport
        # Each identity has its own connections (DeadlineTransport); new_client keeps no state.
        self._client = new_client(transport, self._timeout_s)
        # Users with a TLS client certificate of their own get a connection pool each.
        self._user_clients: dict[int, tuple[httpx.Client, DeadlineTransport]] = {}
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
        except StepError as problem:
            return self._record(unsent_exchange(label, step, str(problem)))
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
        credential_no = credential_user(token_variant, user)
        credentials = credential_headers(self.target, self._user(credential_no))
        headers.update(credentials)
        if body:
            headers["Content-Type"] = "application/xml"
        prepared = PreparedRequest(
            method.upper(),
            url,
            path.encode("ascii", "replace"),
            headers,
            body,
            token_variant,
            "recorded",
            ["replayed from recorded evidence"],
            credential_user=credential_no,
            identity=identity_of(token_variant, credential_no, bool(credentials)),
        )
        try:
            request = self._build(prepared)
        except StepError as problem:
            step = {"request": "raw", "method": method, "path": path}
            return self._record(unsent_exchange(label, step, str(problem)))
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

    def _prepare(self, step: Mapping[str, Any], label: str) -> PreparedRequest:
        kind = step.get("request")
        if kind not in REQUEST_TYPES:
            raise StepError(f"unknown request type {kind!r} (known: {', '.join(REQUEST_TYPES)})")
        user_no = user_number(step.get("user", 1))
        user = self._user(user_no)
        method = str(step.get("method", "POST")).upper()
        token_variant = str(step.get("token", "valid"))
        body_variant = str(step.get("body", "none"))
        if body_variant not in BODY_VARIANTS:
            raise StepError(f"unknown body {body_variant!r} (known: {', '.join(BODY_VARIANTS)})")
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
        credential_no = credential_user(token_variant, user_no)
        credentials = credential_headers(self.target, self._user(credential_no))
        headers.update(credentials)
        fields = step.get("fields") or {}
        if not isinstance(fields, Mapping):
            raise StepError("fields must be a mapping of KmsRequest element names to values")
        body = self._body(body_variant, user_no, user, url, fields)
        if body_variant != "none":
            headers["Content-Type"] = "application/xml"
        return PreparedRequest(
            method,
            url,
            raw_target,
            headers,
            body,
            token_variant,
            body_variant,
            notes,
            credential_user=credential_no,
            identity=identity_of(token_variant, credential_no, bool(credentials)),
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
            url = f"{base}/cert/" + path_segment(self._cert_uri(str(step.get("uri", "own"))))
        elif kind == "lookup":
            url = f"{base}/lookup/" + path_segment(self._lookup_uri(str(step.get("uri", "known"))))
        elif kind == "redirect":
            url = f"{base}/redirect"
        else:
            path = step.get("path")
            if not isinstance(path, str) or not path:
                raise StepError("a raw request needs a path")
            path = quote(path if path.startswith("/") else "/" + path, safe=_VISIBLE_ASCII)
            parts = urlsplit(base)
            url = urlunsplit((parts.scheme, parts.netloc, "", "", "")) + path
            raw_target = path.encode("ascii")
        scheme = str(step.get("scheme", "https")).lower()
        if scheme not in ("https", "http"):
            raise StepError(f"scheme {scheme!r} is not https or http")
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
        segments = "/" + path_segment(uri)
        if time_value is not None:
            segments += "/" + path_segment(self._keyprov_time(str(time_value)))
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
            return "/" + path_segment(str(number))
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
        return "/" + path_segment(cache_num)

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
        return bearer_token(self.target, variant, user_no, self._user)

    def _client_for(self, user_no: int) -> tuple[httpx.Client, DeadlineTransport | None]:
        """The client whose TLS identity is that user's (its own certificate, if any)."""
        user = self._user(user_no)
        if self._in_process or not has_own_certificate(user) or self._setup_error:
            return self._client, self._deadline_transport
        if user_no not in self._user_clients:
            transport = DeadlineTransport(tls_context(self.target, user))
            client = new_client(transport, self._timeout_s)
            self._user_clients[user_no] = (client, transport)
        return self._user_clients[user_no]

    def _body(
        self, variant: str, user_no: int, user: User, url: str, fields: Mapping[str, Any]
    ) -> bytes:
        return request_body(
            variant,
            user_no,
            user,
            url,
            fields,
            profile=self.profile,
            now=self._now(),
            kms_uri=self._required_kms_uri,
        )

    # -- sending -----------------------------------------------------------------------

    def _build(self, prepared: PreparedRequest) -> httpx.Request:
        extensions: dict[str, Any] = {IDENTITY_EXTENSION: prepared.identity}
        if prepared.raw_target:
            extensions[RAW_TARGET] = prepared.raw_target
        try:
            return self._client.build_request(
                prepared.method,
                prepared.url,
                content=prepared.body,
                headers=prepared.headers,
                extensions=extensions,
            )
        except httpx.InvalidURL as exc:
            raise StepError(one_line(f"the request URL is not usable: {exc}")) from None
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            # Only the exception type: a header value (a token) may be in its message.
            raise StepError(f"the request could not be built ({type(exc).__name__})") from None

    def _exchange(self, label: str, prepared: PreparedRequest, request: httpx.Request) -> Exchange:
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
        try:
            client, deadline_transport = self._client_for(prepared.credential_user)
        except (OSError, ssl.SSLError, ValueError) as exc:
            exchange.error = f"TLS: cannot load the client certificate: {one_line(str(exc))}"
            exchange.error_kind = "tls"
            return exchange
        transfer(
            client,
            request,
            exchange,
            ExchangeBounds(started, self._timeout_s, self._max_body),
            deadline_transport=deadline_transport,
            record_tls=not self._in_process,
        )
        return exchange

    def _record(self, exchange: Exchange) -> Exchange:
        self.exchanges.append(exchange)
        return exchange

    def _message_content(self, body: bytes, user: User) -> MessageContent | None:
        """The KmsMessage content of a response, decrypted with the user's TrK if needed."""
        return read_message_content(body, user, self.profile, self._max_body, self.target.limits)

    def hold(self, users: Mapping[int, User] | None) -> None:
        """The keys the UE holds in the running case (conformance.protection.uestate), by user
        number: requests name and sign with them. None: the keys of the target file."""
        self._held = dict(users or {})

    def _user(self, number: int) -> User:
        if not 1 <= number <= len(self.target.users):
            raise MissingInput(f"users[{number}]")
        return self._held.get(number) or self.target.users[number - 1]

    def _now(self) -> datetime:
        now = self._clock()
        return now if now.utcoffset() is not None else now.replace(tzinfo=UTC)
