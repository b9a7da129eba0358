"""The reference KMS as a Starlette application (TS 33.180 Annex D over HTTPS).

Every request goes through one pipeline: route (kms-interface.md section 3, DESIGN.md
section 7), method, size, bearer token, optional KmsRequest body, the request type's
message, protection, response. Any refusal is a ``KmsFailure`` that becomes a KmsResponse
with a KmsError whose ErrorCode is the HTTP status (kms-interface.md section 12).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from lxml import etree
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.crypto import eccsi, sakke
from conformance.crypto.errors import CryptoError
from conformance.crypto.periods import decode_ntp_time
from refkms import messages
from refkms.domain import Certificate, Domain, User
from refkms.messages import Envelope
from refkms.protection import Protection, key_wrapper, new_key_elements, protect_response
from refkms.requests import KmsRequest, RequestContext, RequestRefused, check_request, read_request
from refkms.rotation import KeyChain, UnknownKeyId, signing_key_id
from refkms.tokens import TokenRejected
from refkms.xmlsafe import MAX_REQUEST_BYTES

BASE_PATH = "/keymanagement/identity/v1"
ACCESS_LOG = logging.getLogger("refkms.access")
ERROR_LOG = logging.getLogger("refkms")
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
# Segments after the base path each request type takes (kms-interface.md section 3).
_SEGMENTS = {
    "init": (0,),
    "keyprov": (0, 1, 2),
    "certcache": (0, 1),
    "cert": (1,),
    "lookup": (1,),
    "redirect": (0,),
}

_LAST_RESORT_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<KmsResponse xmlns="urn:3gpp:ns:mcsecKMSInterface:1.0" Version="1.0.0"><UserUri></UserUri>'
    b"<KmsUri></KmsUri><Time>1900-01-01T00:00:00Z</Time><ClientReqUrl></ClientReqUrl>"
    b"<KmsError><ErrorCode>500</ErrorCode><ErrorMsg>internal error</ErrorMsg></KmsError>"
    b"</KmsResponse>"
)

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class KmsFailure(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Exchange:
    """One request as the pipeline learns about it."""

    kind: str
    args: tuple[str, ...]
    url: str
    path: str
    user: User | None = None
    body: KmsRequest | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    generations: tuple[int, int] = (0, 0)  # TrK and InK generations the UE holds


def create_app(domain: Domain) -> Starlette:
    kms = ReferenceKms(domain)
    app = Starlette(routes=[Route("/{path:path}", kms.endpoint, methods=_METHODS)])
    app.add_middleware(RequestLog)
    return app


class RequestLog:
    """One line per request on stderr: method, path, status, duration (issue 3 item 1)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def logged_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            path = scope.get("raw_path", b"").decode("latin-1") or scope.get("path", "")
            elapsed = (time.perf_counter() - started) * 1000
            ACCESS_LOG.info("%s %s %d %.1f ms", scope.get("method"), path, status[0], elapsed)


class ReferenceKms:
    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.faults = domain.faults
        self.key_chains = {
            uri: KeyChain(user, domain.rotation_seeds[uri]) for uri, user in domain.users.items()
        }
        # The newest TrK generation delivered per user: read only by a rotation fault.
        self._newest_trk: dict[str, int] = {}

    async def endpoint(self, request: Request) -> Response:
        exchange = Exchange("", (), _client_req_url(request), _raw_path(request))
        try:
            exchange.kind, exchange.args = self.dispatch(exchange.path)
            self.check_method(request.method)
            body = await _read_body(request)
            return await run_in_threadpool(self.process, exchange, request, body)
        except KmsFailure as failure:
            return self._answer_failure(exchange, failure)
        except Exception:
            ERROR_LOG.exception("unexpected error on %s %s", request.method, exchange.path)
            return self._answer_failure(exchange, KmsFailure(500, "the KMS failed internally"))

    def dispatch(self, path: str) -> tuple[str, tuple[str, ...]]:
        """The request type and its decoded path segments; 404 for anything else."""
        if path.startswith(BASE_PATH + "/"):
            segments = path[len(BASE_PATH) + 1 :].split("/")
            kind, raw_args = segments[0], segments[1:]
            allowed = _SEGMENTS.get(kind, ())
            if kind == "lookup" and not self.domain.profile.lookup:
                allowed = ()
            if len(raw_args) in allowed and all(raw_args):
                try:
                    return kind, tuple(unquote(arg, errors="strict") for arg in raw_args)
                except UnicodeDecodeError:
                    raise KmsFailure(400, "a path segment is not UTF-8") from None
        if self.faults.on("unknown-path-served"):
            return "init", ()
        raise KmsFailure(404, "no such KMS resource")

    def check_method(self, method: str) -> None:
        if method == "POST" or (method == "GET" and self.faults.on("method-get-served")):
            return
        raise KmsFailure(405, "KMS requests use HTTP POST (D.2.1)", {"Allow": "POST"})

    def process(self, exchange: Exchange, request: Request, body: bytes) -> Response:
        exchange.user = self.authorize(request.headers.get("authorization"))
        try:
            exchange.body = read_request(body)
            generations = self.held_generations(exchange.user, exchange.body)
            held = self.key_chains[exchange.user.uri].holding(*generations)
            if exchange.body is not None:
                check_request(exchange.body, self._request_context(held, exchange.path))
        except RequestRefused as refused:
            raise KmsFailure(refused.status, refused.message) from None
        newest = self._newest_trk.get(held.uri, 0)
        named = exchange.body is not None and exchange.body.trk_id is not None
        if (
            self.faults.on("rotation-old-trk-id-answered-with-new")
            and named
            and (generations[0] < newest)
        ):
            # Ignores the TrK the request names and answers under the newest it delivered.
            generations = (newest, generations[1])
            held = self.key_chains[held.uri].holding(*generations)
        exchange.generations = generations
        exchange.user = self.key_chains[held.uri].faulted(held, *generations, self.faults)
        return self.respond(exchange)

    def held_generations(self, user: User, body: KmsRequest | None) -> tuple[int, int]:
        """The TrK and InK generations the UE holds, as its request names them (a request
        naming none holds the provisioned keys; refkms.rotation)."""
        chain = self.key_chains[user.uri]
        if body is None:
            return 0, 0
        try:
            trk = chain.trk_generation(body.trk_id) if body.trk_id is not None else 0
        except UnknownKeyId as exc:
            raise RequestRefused(400, str(exc)) from None
        signer = body.signature_id
        if signer is None and body.signature is not None:
            signer = signing_key_id(body.signature)
        ink = (chain.ink_generation(signer) if signer is not None else None) or 0
        policy = self.domain.config.protection
        if (trk and not policy.rotate_trk) or (ink and not policy.rotate_ink):
            # Without rotation no later generation was ever delivered.
            raise RequestRefused(400, "the request names a key this KMS never delivered")
        return trk, ink

    def authorize(self, authorization: str | None) -> User:
        domain = self.domain
        if authorization is None and self.faults.on("auth-no-token-accepted"):
            return next(iter(domain.users.values()))
        try:
            identity = domain.tokens.verify(authorization, domain.token_policy)
        except TokenRejected as rejected:
            challenge = 'Bearer realm="kms"'
            if rejected.error:
                challenge += f', error="{rejected.error}"'
            raise KmsFailure(
                rejected.status, rejected.description, {"WWW-Authenticate": challenge}
            ) from None
        user = domain.users.get(identity)
        if user is None:
            raise KmsFailure(403, "the token's MC service ID is not provisioned on this KMS")
        return user

    def respond(self, exchange: Exchange) -> Response:
        assert exchange.user is not None
        user = exchange.user
        if exchange.kind == "redirect":
            return self.redirect(exchange)
        handler = {
            "init": self.init,
            "keyprov": self.keyprov,
            "certcache": self.certcache,
            "cert": self.cert,
            "lookup": self.lookup,
        }[exchange.kind]
        user_uri, message = handler(exchange)
        if self.faults.on("envelope-wrong-message-type"):
            message = self._wrong_message_type(exchange.kind)
        response = messages.kms_response(
            self._envelope(exchange, user_uri),
            message,
            self.faults,
            other_user=self.domain.other_user(user.uri),
            other_resource_url=self._other_resource_url(exchange),
        )
        rename_if_faulted(response, self.faults)
        document = protect_response(response, self._protection(user))
        return self._xml_response(200, document, exchange.extra_headers)

    def init(self, exchange: Exchange) -> tuple[str, etree._Element]:
        assert exchange.user is not None
        certificate = self._certificate_xml(self.served_root_certificate(), in_init=True)
        return exchange.user.uri, messages.kms_init(certificate, self._new_keys(exchange))

    def keyprov(self, exchange: Exchange) -> tuple[str, etree._Element]:
        assert exchange.user is not None
        domain, user = self.domain, exchange.user
        user_uri = exchange.args[0] if exchange.args else user.uri
        if user_uri != user.uri and not (
            self.faults.on("authz-other-users-keys-served") and user_uri in domain.users
        ):
            raise KmsFailure(403, "a user may not obtain another identity's key material")
        period_no = current = domain.issuer.current_period_no(domain.clock())
        if len(exchange.args) == 2 and not self.faults.on("keyprov-time-ignored"):
            try:
                ntp = decode_ntp_time(exchange.args[1])
            except CryptoError as exc:
                raise KmsFailure(400, str(exc)) from None
            period_no = domain.issuer.period_no_at(ntp)
        if period_no < 0:
            raise KmsFailure(400, "the requested time lies before the first key period")
        key_set = domain.issuer.key_set(user_uri, period_no)
        if period_no != current and self.faults.on("period-other-numbered-current"):
            # The keys of the requested period, numbered as the current one.
            key_set = replace(key_set, period_no=current)
        protection = self._protection(user)
        element = messages.kms_key_set(
            key_set,
            domain.own_certificate,
            self.faults,
            user_id_encoding=domain.config.user_id_encoding,
            other_user=domain.other_user(user_uri),
            wrap=key_wrapper(protection) if protection.policy.encryption == "keys" else None,
        )
        return user_uri, messages.kms_key_prov([element], self._new_keys(exchange))

    def certcache(self, exchange: Exchange) -> tuple[str, etree._Element]:
        assert exchange.user is not None
        cache_num = self.domain.config.cache_num
        certificates = self.domain.partner_certificates
        if exchange.args:
            if not exchange.args[0].isdigit():
                raise KmsFailure(400, "the cache number is not a non-negative integer")
            # The client is up to date: nothing new, same CacheNum (DESIGN.md section 7).
            if int(exchange.args[0]) == cache_num:
                certificates = ()
                if self.faults.on("certcache-cachenum-regresses"):
                    cache_num -= 1
        if self.faults.on("kms-cert-certcache-old") and self.domain.generation:
            certificates = (*certificates, self.domain.certificates[0])  # a stale own entry
        elements = [self._certificate_xml(certificate) for certificate in certificates]
        return exchange.user.uri, messages.kms_cert_cache(elements, cache_num)

    def cert(self, exchange: Exchange) -> tuple[str, etree._Element]:
        assert exchange.user is not None
        kms_uri = exchange.args[0]
        known = {c.kms_uri: c for c in self.domain.partner_certificates}
        known[self.domain.config.kms_uri] = self.served_root_certificate()
        if self.faults.on("kms-cert-cert-old"):
            known[self.domain.config.kms_uri] = self.domain.certificates[0]
        certificate = known.get(kms_uri)
        if certificate is not None and self.faults.on("cert-other-certificate"):
            certificate = self.served_root_certificate()
        if certificate is None:
            if not self.faults.on("cert-unknown-answered-200"):
                raise KmsFailure(404, f"no KMS certificate for {kms_uri}")
            return exchange.user.uri, messages.kms_cert_cache([], self.domain.config.cache_num)
        element = self._certificate_xml(certificate)
        return exchange.user.uri, messages.kms_cert_cache([element], self.domain.config.cache_num)

    def lookup(self, exchange: Exchange) -> tuple[str, etree._Element]:
        assert exchange.user is not None
        sip_uri = exchange.args[0]
        kms_uri = self.domain.lookup.get(sip_uri)
        if kms_uri is None:
            raise KmsFailure(404, f"no KMS known for {sip_uri}")
        if self.faults.on("lookup-wrong-kms-uri"):
            kms_uri = self.domain.config.kms_uri
        return exchange.user.uri, messages.kms_lookup(sip_uri, [kms_uri])

    def redirect(self, exchange: Exchange) -> Response:
        """KMS Redirect upload: no content unless an error occurs (seed CR)."""
        if exchange.body is None or exchange.body.krr_list is None:
            raise KmsFailure(400, "a redirect upload carries a KmsRequest with a KrrList")
        if self.faults.on("redirect-answered-with-kmsmessage"):
            exchange = replace(exchange, kind="init")
            return self.respond(exchange)
        return Response(status_code=204, headers=self._headers())

    def served_root_certificate(self) -> Certificate:
        """The Root certificate as the active faults make the KMS publish it."""
        certificate = self.domain.own_certificate
        if self.faults.on("cert-not-stable"):
            fresh = 1 + secrets.randbelow(eccsi.Q - 1)
            certificate = replace(
                certificate,
                cert_uri=f"cert{secrets.randbelow(10**6)}.{certificate.kms_uri}",
                pub_auth_key=eccsi.kpak_from_ksak(fresh),
            )
        if self.faults.on("cert-pubauthkey-off-curve"):
            certificate = replace(certificate, pub_auth_key=_off_curve(certificate.pub_auth_key))
        if self.faults.on("cert-pubenckey-outside-subgroup"):
            certificate = replace(
                certificate, pub_enc_key=_plus_two_torsion(certificate.pub_enc_key)
            )
        return certificate

    def error_response(self, exchange: Exchange, failure: KmsFailure) -> Response:
        user_uri = exchange.user.uri if exchange.user is not None else ""
        message = None
        if self.faults.on("envelope-error-with-message"):
            message = messages.kms_init(self._certificate_xml(self.domain.own_certificate), [])
        response = messages.kms_response(
            self._envelope(exchange, user_uri),
            message,
            self.faults,
            error=(failure.status, failure.message),
        )
        return self._xml_response(failure.status, response, failure.headers)

    def _answer_failure(self, exchange: Exchange, failure: KmsFailure) -> Response:
        try:
            return self.error_response(exchange, failure)
        except Exception:
            ERROR_LOG.exception("could not build the error response for %s", exchange.path)
            return Response(_LAST_RESORT_ERROR, 500, self._headers(), media_type="application/xml")

    def _certificate_xml(
        self, certificate: Certificate, *, in_init: bool = False
    ) -> etree._Element:
        return messages.kms_certificate(
            certificate, self.faults, self.domain.clock(), in_init=in_init
        )

    def _new_keys(self, exchange: Exchange) -> list[etree._Element]:
        # A new key goes only to a UE whose request names the TrK it holds: after the
        # delivery the KMS must use the TrK "currently residing in the MC UE" (seed CR),
        # and it learns which one that is from the next request (refkms.rotation).
        body = exchange.body
        if exchange.user is None or body is None or body.trk_id is None:
            return []
        if self.domain.config.protection.rotate_trk:
            uri, delivered = exchange.user.uri, exchange.generations[0] + 1
            self._newest_trk[uri] = max(self._newest_trk.get(uri, 0), delivered)
        delivered = new_key_elements(self._protection(exchange.user))
        if body.signature is None:
            # Likewise a new InK only to a signed request: its Signature-ID tells the KMS
            # which key signs for the UE, and the UE signs with the InK it adopted.
            delivered = [(n, e) for n, e in delivered if n != "NewIntegrityKey"]
        return [messages.new_key_element(name, encrypted_key) for name, encrypted_key in delivered]

    def _wrong_message_type(self, kind: str) -> etree._Element:
        certificate = self._certificate_xml(self.domain.own_certificate)
        if kind == "init":
            return messages.kms_cert_cache([certificate], self.domain.config.cache_num)
        return messages.kms_init(certificate, [])

    def _envelope(self, exchange: Exchange, user_uri: str) -> Envelope:
        config = self.domain.config
        return Envelope(user_uri, config.kms_uri, config.kms_id, self.domain.clock(), exchange.url)

    def _other_resource_url(self, exchange: Exchange) -> str:
        base = exchange.url.split(BASE_PATH, 1)[0] + BASE_PATH
        return base + ("/keyprov" if exchange.kind == "init" else "/init")

    def _protection(self, user: User) -> Protection:
        other = self.domain.users[self.domain.other_user(user.uri)]
        return Protection(
            user=user,
            other_user=other,
            policy=self.domain.config.protection,
            key_id_elements=self.domain.profile.key_id_elements,
            faults=self.faults,
        )

    def _request_context(self, user: User, path: str) -> RequestContext:
        return RequestContext(
            user=user,
            kms_uri=self.domain.config.kms_uri,
            path=path,
            now=self.domain.clock(),
            window_s=self.domain.config.request_window_s,
            key_id_elements=self.domain.profile.key_id_elements,
            faults=self.faults,
        )

    def _xml_response(
        self, status: int, document: etree._Element, extra: dict[str, str]
    ) -> Response:
        content_type = (
            "text/plain" if self.faults.on("content-type-text-plain") else "application/xml"
        )
        body = etree.tostring(document, xml_declaration=True, encoding="UTF-8")
        return Response(body, status, {**self._headers(), **extra}, media_type=content_type)

    def _headers(self) -> dict[str, str]:
        return {} if self.faults.on("no-cache-control") else {"Cache-Control": "no-store"}


def rename_if_faulted(response: etree._Element, faults: Any) -> None:
    """The envelope-wrong-namespace fault: every 3GPP element moves to another namespace."""
    if not faults.on("envelope-wrong-namespace"):
        return
    prefix = f"{{{messages.NS}}}"
    for element in response.iter():
        if isinstance(element.tag, str) and element.tag.startswith(prefix):
            element.tag = f"{{{messages.WRONG_NS}}}{element.tag[len(prefix) :]}"


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise KmsFailure(413, f"request bodies are limited to {MAX_REQUEST_BYTES} octets")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise KmsFailure(413, f"request bodies are limited to {MAX_REQUEST_BYTES} octets")
        chunks.append(chunk)
    return b"".join(chunks)


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path
    return path.split("?", 1)[0]


def _client_req_url(request: Request) -> str:
    """The request URI as the client sent it, percent-encoding included (REQ-057)."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    origin = f"{request.url.scheme}://{request.url.netloc}"
    return origin + _raw_path(request) + (f"?{query}" if query else "")


def _off_curve(kpak: bytes) -> bytes:
    y = int.from_bytes(kpak[33:], "big")
    return kpak[:33] + ((y + 1) % eccsi.P).to_bytes(32, "big")


def _plus_two_torsion(z: bytes) -> bytes:
    # (0, 0) lies on y^2 = x^3 - 3x and has order 2, so Z + (0, 0) is a curve point of
    # order 2q: a public key outside the order-q subgroup (RFC 6508 section 2.1).
    x, y = sakke.decode_point(z)
    slope = y * pow(x, -1, sakke.P) % sakke.P
    x3 = (slope * slope - x) % sakke.P
    y3 = (slope * (x - x3) - y) % sakke.P
    return sakke.encode_point((x3, y3))
