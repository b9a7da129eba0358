"""The probe against the reference KMS over loopback HTTPS, and against servers that misbehave.

What a user of the probe sees: the status and message each request type and variant gets,
the request as it went over the wire (path encoding, headers, body), the signature on a
signed request, the inputs it says are missing, and one-line transport errors that arrive
within the configured timeout.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from probe_support.kms import ServedKms, serving_kms
from probe_support.servers import drip, fixed, http_response, raw_server, refused_port, silent
from probe_support.tls import make_pki

from conformance.crypto.periods import NTP_UNIX_OFFSET
from conformance.model.messages import (
    KmsCertCache,
    KmsInit,
    KmsKeyProv,
    KmsLookup,
    KmsResponse,
    parse_response,
)
from conformance.probe.sender import MissingInput, PreconditionFailed, Probe
from conformance.profiles import KMS_INTERFACE_NS, get_profile, load_schema
from conformance.target.file import (
    NegativeTokens,
    Pics,
    Pixit,
    ProfileSettings,
    Secret,
    Target,
    TargetSettings,
    User,
)
from conformance.xmlsec import xmldsig

NS = {"k": KMS_INTERFACE_NS, "ds": xmldsig.DS_NS}
R17 = get_profile("ts33180-r17")
ALICE, BOB, CAROL = "sip:alice@example.org", "sip:bob@example.org", "sip:carol@example.org"


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedKms]:
    with serving_kms(tmp_path_factory.mktemp("probe-kms")) as served:
        yield served


@pytest.fixture
def probe(kms: ServedKms) -> Iterator[Probe]:
    with Probe(kms.target, R17) as p:
        yield p


def response_of(body: bytes) -> KmsResponse:
    return parse_response(etree.fromstring(body), KMS_INTERFACE_NS)


def request_root(body: bytes) -> etree._Element:
    return etree.fromstring(body)


def child_text(element: etree._Element, name: str) -> str | None:
    found = element.find(f"k:{name}", NS)
    return None if found is None else (found.text or "")


def error_msg(body: bytes) -> str:
    error = response_of(body).kms_error
    assert error is not None, body[:300]
    return error.error_msg or ""


# -- request types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "content", "path_tail"),
    [
        ({"request": "init"}, KmsInit, "/init"),
        ({"request": "keyprov"}, KmsKeyProv, "/keyprov"),
        ({"request": "keyprov", "uri": "self"}, KmsKeyProv, "/keyprov/sip%3Aalice%40example.org"),
        ({"request": "certcache"}, KmsCertCache, "/certcache"),
        ({"request": "cert", "uri": "own"}, KmsCertCache, "/cert/kms.example.org"),
        ({"request": "cert", "uri": "partner"}, KmsCertCache, "/cert/kms.partner1.example.net"),
        ({"request": "lookup"}, KmsLookup, "/lookup/sip%3Aalice%40example.org"),
    ],
)
def test_every_request_type_answers_200_with_its_message(
    probe: Probe, step: dict[str, Any], content: type, path_tail: str
) -> None:
    exchange = probe.send(step, "s")
    assert exchange.error is None and exchange.status == 200, exchange.error or exchange.body
    assert exchange.request.path == "/keymanagement/identity/v1" + path_tail
    response = response_of(exchange.body)
    assert response.kms_message is not None
    assert isinstance(response.kms_message.content, content)
    # The KMS echoes the URL the probe says it sent.
    assert response.get("ClientReqUrl") == exchange.request.url
    assert response.get("UserUri") in (ALICE, "sip:user1@partner1.example.net")
    assert exchange.label == "s" and probe.exchanges == [exchange]
    assert exchange.http_version == "HTTP/1.1" and exchange.reason == "OK"
    assert exchange.header("cache-control") == "no-store"


def test_redirect_upload_answers_without_content(probe: Probe) -> None:
    exchange = probe.redirect()
    assert exchange.status == 204 and exchange.body == b""
    root = request_root(exchange.request.body)
    krr = root.find("k:KrrList/{urn:3gpp:ns:mcsecKMSKRR:1.0}KmsRedirectResponse", NS)
    assert krr is not None


def test_lookup_of_unknown_sip_uri_and_cert_of_unknown_kms_get_404(probe: Probe) -> None:
    assert probe.lookup("unknown").status == 404
    unknown = probe.cert("unknown")
    assert unknown.status == 404
    assert unknown.request.path.endswith("/cert/kms.unknown.example")


def test_tls_facts_name_the_reference_kms_certificate(probe: Probe) -> None:
    tls = probe.init().tls
    assert tls is not None
    assert tls.version in ("TLSv1.2", "TLSv1.3") and tls.cipher
    assert tls.peer_subject == "CN=localhost"
    assert tls.peer_issuer == "CN=kms-conformance reference KMS CA"
    assert "IP:127.0.0.1" in tls.peer_san
    assert tls.peer_not_after is not None
    assert datetime.fromisoformat(tls.peer_not_after) > datetime.now(UTC)


# -- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status", "challenge"),
    [
        ("none", 401, None),
        ("expired", 401, "invalid_token"),
        ("malformed", 401, "invalid_token"),
        ("bad_signature", 401, "invalid_token"),
        ("wrong_scope", 403, "insufficient_scope"),
    ],
)
def test_token_variants_are_refused_as_the_reference_kms_does(
    probe: Probe, kms: ServedKms, token: str, status: int, challenge: str | None
) -> None:
    exchange = probe.init(token=token)
    assert exchange.status == status
    authorization = dict(exchange.request.headers).get("Authorization")
    if token == "none":
        assert authorization is None
    else:
        negative = getattr(kms.target.tokens, token)
        assert authorization == f"Bearer {negative.text()}"
    www = exchange.header("www-authenticate") or ""
    assert (challenge is None) or f'error="{challenge}"' in www
    assert exchange.request.token_variant == token


def test_other_users_token_makes_the_kms_answer_for_that_user(probe: Probe) -> None:
    own = probe.init()
    other = probe.init(token="other_user")
    assert (own.status, other.status) == (200, 200)
    assert response_of(own.body).get("UserUri") == ALICE
    assert response_of(other.body).get("UserUri") == BOB
    # User 2 sending with "other_user" presents user 1's token.
    assert response_of(probe.init(user=2, token="other_user").body).get("UserUri") == ALICE


def test_keyprov_for_the_other_user_is_refused(probe: Probe) -> None:
    exchange = probe.keyprov(uri="other")
    assert exchange.status == 403
    assert exchange.request.path.endswith("/keyprov/sip%3Abob%40example.org")


# -- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", ["request", "signed", "signed-ink", "extension", "krrlist", "bad-krrlist"]
)
def test_bodies_the_reference_kms_accepts(probe: Probe, body: str) -> None:
    exchange = probe.init(body=body)
    assert exchange.status == 200, error_msg(exchange.body)
    assert dict(exchange.request.headers)["Content-Type"] == "application/xml"
    assert exchange.request.body_variant == body


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ("signed-trk", 400, "Signature-ID must name the InK-ID"),
        ("signed-wrong-key", 400, "does not verify"),
        ("signed-wrong-id", 400, "Signature-ID must name the InK-ID"),
        ("bad-signature", 400, "does not verify"),
        ("malformed", 400, "not well-formed"),
        ("junk", 413, "limited to"),
    ],
)
def test_bodies_the_reference_kms_refuses(
    probe: Probe, body: str, status: int, reason: str
) -> None:
    exchange = probe.init(body=body)
    assert exchange.status == status
    assert reason in error_msg(exchange.body)


def test_junk_is_one_mebibyte_of_non_xml(probe: Probe) -> None:
    body = probe.init(body="junk").request.body
    assert len(body) == 1024 * 1024 and not body.lstrip().startswith(b"<")


def test_malformed_body_is_a_request_cut_inside_an_element(probe: Probe) -> None:
    body = probe.init(body="malformed").request.body
    assert b"<KmsRequest" in body and body.endswith(b"<Kms")
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(body)


def test_plain_request_has_the_profile_order_and_values(probe: Probe, kms: ServedKms) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    exchange = probe.keyprov(uri="self", body="request")
    root = request_root(exchange.request.body)
    assert root.tag == f"{{{KMS_INTERFACE_NS}}}KmsRequest" and root.get("Version") == "1.1.0"
    names = [etree.QName(child).localname for child in root]
    assert names == ["UserUri", "KmsUri", "Time", "ClientReqUrl", "TrK-ID"]
    assert child_text(root, "UserUri") == ALICE
    assert child_text(root, "KmsUri") == "kms.example.org"
    assert child_text(root, "ClientReqUrl") == exchange.request.url
    assert exchange.request.url.endswith("/keyprov/sip%3Aalice%40example.org")
    sent = datetime.fromisoformat((child_text(root, "Time") or "").replace("Z", "+00:00"))
    assert before <= sent <= datetime.now(UTC)
    trk = kms.target.users[0].trk
    assert trk is not None and child_text(root, "TrK-ID") == trk.key_id_b64
    assert load_schema(R17).is_valid(root)


@pytest.mark.parametrize("body", ["request", "extension", "krrlist", "signed", "bad-krrlist"])
def test_built_requests_validate_against_the_r17_schema(probe: Probe, body: str) -> None:
    sent = probe.redirect(body=body).request.body
    assert load_schema(R17).is_valid(request_root(sent))


def test_r16_profile_leaves_out_the_key_id_elements(kms: ServedKms) -> None:
    r16 = get_profile("ts33180-r16")
    with Probe(kms.target, r16) as probe:
        signed = request_root(probe.init(body="signed").request.body)
        plain = request_root(probe.init(body="request").request.body)
    assert load_schema(r16).is_valid(signed) and load_schema(r16).is_valid(plain)
    for root in (plain, signed.find("k:KmsRequest", NS)):
        assert root is not None
        assert child_text(root, "TrK-ID") is None and child_text(root, "Signature-ID") is None


def test_signed_request_verifies_with_the_ink_and_names_it(probe: Probe, kms: ServedKms) -> None:
    ink = kms.target.users[0].ink
    assert ink is not None
    root = request_root(probe.init(body="signed").request.body)
    assert root.tag == f"{{{KMS_INTERFACE_NS}}}SignedKmsRequest"
    request, signature = list(root)
    assert request.tag == f"{{{KMS_INTERFACE_NS}}}KmsRequest" and request.get("Id")
    assert child_text(request, "Signature-ID") == ink.key_id_b64
    assert [etree.QName(c).localname for c in request][-2:] == ["TrK-ID", "Signature-ID"]
    result = xmldsig.verify(signature, ink.key.reveal())
    assert result.ok, result.message
    assert result.key_name == ink.key_id_b64
    assert xmldsig.signature_covers(result, request)
    reference = signature.find("ds:SignedInfo/ds:Reference", NS)
    assert reference is not None and reference.get("URI") == "#" + request.get("Id", "")


def test_signed_variants_use_the_keys_and_ids_they_promise(probe: Probe, kms: ServedKms) -> None:
    alice = kms.target.users[0]
    assert alice.ink is not None and alice.trk is not None
    ink, trk = alice.ink.key.reveal(), alice.trk.key.reveal()

    def signed(body: str) -> tuple[etree._Element, etree._Element]:
        root = request_root(probe.init(body=body).request.body)
        return root[0], root[1]

    request, signature = signed("signed-trk")
    assert xmldsig.verify(signature, trk).ok
    assert child_text(request, "Signature-ID") == alice.trk.key_id_b64

    request, signature = signed("signed-wrong-id")
    result = xmldsig.verify(signature, ink)
    assert result.ok and result.key_name == alice.trk.key_id_b64
    assert child_text(request, "Signature-ID") == alice.trk.key_id_b64

    request, signature = signed("signed-wrong-key")
    assert not xmldsig.verify(signature, ink).ok
    assert child_text(request, "Signature-ID") == alice.ink.key_id_b64

    _, signature = signed("bad-signature")
    result = xmldsig.verify(signature, ink)
    assert result.reason is xmldsig.VerificationReason.SIGNATURE_MISMATCH


def test_trk_only_user_signs_with_the_trk(probe: Probe, kms: ServedKms) -> None:
    carol = kms.target.users[2]
    assert carol.uri == CAROL and carol.ink is None and carol.trk is not None
    exchange = probe.init(user=3, body="signed")
    assert exchange.status == 200
    root = request_root(exchange.request.body)
    assert xmldsig.verify(root[1], carol.trk.key.reveal()).ok
    wrong = request_root(probe.init(user=3, body="signed-wrong-id").request.body)
    wrong_id = child_text(wrong[0], "Signature-ID") or ""
    assert wrong_id != carol.trk.key_id_b64 and len(base64.b64decode(wrong_id)) == 16


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ({"KmsUri": "kms.elsewhere.test"}, 400, "is not this KMS"),
        ({"Time": "stale"}, 400, "away from the KMS clock"),
        ({"Time": "future"}, 400, "away from the KMS clock"),
        ({"TrK-ID": "unknown"}, 400, "TrK-ID does not name"),
        ({"UserUri": "omit"}, 400, "lacks UserUri"),
        ({"UserUri": BOB}, 403, "UserUri is not the authenticated user"),
    ],
)
def test_field_overrides_reach_the_kms(
    probe: Probe, fields: dict[str, str], status: int, reason: str
) -> None:
    exchange = probe.init(body="signed", fields=fields)
    assert exchange.status == status
    assert reason in error_msg(exchange.body)


def test_field_overrides_are_applied_before_signing(probe: Probe, kms: ServedKms) -> None:
    ink = kms.target.users[0].ink
    assert ink is not None
    root = request_root(probe.init(body="signed", fields={"TrK-ID": "omit"}).request.body)
    assert child_text(root[0], "TrK-ID") is None
    assert xmldsig.verify(root[1], ink.key.reveal()).ok


# -- path values -------------------------------------------------------------------------


def test_literal_uris_are_one_percent_encoded_segment(probe: Probe) -> None:
    exchange = probe.lookup("sip:user1@partner1.example.net")
    assert exchange.request.path.endswith("/lookup/sip%3Auser1%40partner1.example.net")
    assert exchange.status == 200
    lookup = response_of(exchange.body).kms_message
    assert lookup is not None and isinstance(lookup.content, KmsLookup)
    assert lookup.content.kms_uris == ("kms.partner1.example.net",)
    slash = probe.keyprov(uri="sip:a/b@example.org")
    assert slash.request.path.endswith("/keyprov/sip%3Aa%2Fb%40example.org")


def test_keyprov_time_now_is_the_clock_in_ntp_seconds(kms: ServedKms) -> None:
    instant = datetime(2026, 3, 1, 12, 0, 30, 750000, tzinfo=UTC)
    with Probe(kms.target, R17, clock=lambda: instant) as probe:
        exchange = probe.keyprov(uri="self", time="now")
    ntp = int(instant.timestamp()) + NTP_UNIX_OFFSET
    assert exchange.request.path.endswith(f"/sip%3Aalice%40example.org/{ntp:08X}00000000")
    assert exchange.status == 200


def test_keyprov_next_period_asks_for_the_next_key_period(kms: ServedKms) -> None:
    instant = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    period = kms.domain.config.user_key_period
    ntp = int(instant.timestamp()) + NTP_UNIX_OFFSET
    next_period = ntp // period + 1
    with Probe(kms.target, R17, clock=lambda: instant) as probe:
        exchange = probe.keyprov(uri="self", time="next-period")
        labels = [e.label for e in probe.exchanges]
    assert labels == ["init-preliminary", "step1"]
    assert exchange.request.path.endswith(f"/{next_period * period + 1:08X}00000000")
    key_prov = response_of(exchange.body).kms_message
    assert key_prov is not None and isinstance(key_prov.content, KmsKeyProv)
    assert key_prov.content.key_sets[0].get("KeyPeriodNo") == str(next_period)


def test_literal_keyprov_time_is_sent_as_given(probe: Probe) -> None:
    exchange = probe.keyprov(uri="self", time="D6B4323200000000")
    assert exchange.request.path.endswith("/sip%3Aalice%40example.org/D6B4323200000000")
    assert exchange.status == 200
    assert probe.keyprov(uri="self", time="not-a-time").status == 400


def test_certcache_current_uses_the_cachenum_of_a_preliminary_certcache(
    probe: Probe, kms: ServedKms
) -> None:
    exchange = probe.certcache("current", label="cc")
    cache_num = kms.domain.config.cache_num
    assert [e.label for e in probe.exchanges] == ["cc-preliminary", "cc"]
    assert probe.exchanges[0].request.path.endswith("/certcache")
    assert exchange.request.path.endswith(f"/certcache/{cache_num}")
    cache = response_of(exchange.body).kms_message
    assert cache is not None and isinstance(cache.content, KmsCertCache)
    assert cache.content.certificates == [] and cache.content.attr("CacheNum") == str(cache_num)
    assert probe.certcache(0).request.path.endswith("/certcache/0")


def test_encrypted_responses_are_read_for_kms_uri_and_cachenum(
    tmp_path: Path,
) -> None:
    config = {"protection": {"encryption": "message"}}
    with serving_kms(tmp_path, config) as served:
        target = replace(served.target, pixit=replace(served.target.pixit, kms_uri=None))
        with Probe(target, R17) as probe:
            assert probe.kms_uri() == "kms.example.org"
            init = probe.init_response()
            assert init is not None and b"EncryptedData" in init
            assert probe.certcache("current").request.path.endswith("/certcache/3")
            assert probe.init(body="request").status == 200
            # Fetched once: one preliminary init, however often it is asked for.
            assert [e.label for e in probe.exchanges].count("init-preliminary") == 1


# -- missing inputs and failed preconditions ---------------------------------------------------


def test_missing_inputs_are_named_and_nothing_is_sent(kms: ServedKms) -> None:
    alone = replace(kms.target, users=kms.target.users[:1], tokens=NegativeTokens())
    no_partners = replace(alone, pixit=replace(alone.pixit, partner_kms_uris=(), lookup=()))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"request": "keyprov", "uri": "other"}, "users[2]"),
        ({"request": "init", "token": "other_user"}, "users[2]"),
        ({"request": "init", "user": 4}, "users[4]"),
        ({"request": "init", "token": "expired"}, "tokens.expired"),
        ({"request": "init", "token": "wrong_scope"}, "tokens.wrong_scope"),
        ({"request": "cert", "uri": "partner"}, "pixit.partner_kms_uris"),
        ({"request": "lookup", "uri": "known"}, "pixit.lookup"),
    ]
    with Probe(no_partners, R17) as probe:
        for step, what in cases:
            with pytest.raises(MissingInput) as raised:
                probe.send(step)
            assert raised.value.what == what and str(raised.value) == f"needs {what}"
        assert probe.exchanges == []
    with Probe(kms.target, R17) as probe, pytest.raises(MissingInput, match=r"users\[3\]\.ink"):
        probe.init(user=3, body="signed-ink")
    tokenless = replace(kms.target, users=(replace(kms.target.users[0], token=None),))
    with Probe(tokenless, R17) as probe, pytest.raises(MissingInput, match=r"users\[1\]\.token"):
        probe.init()


def test_failed_preliminary_exchanges_are_preconditions(kms: ServedKms) -> None:
    bad_token = replace(kms.target.users[0], token=Secret(b"not-a-token"))
    target = replace(kms.target, users=(bad_token,))
    with Probe(target, R17) as probe:
        with pytest.raises(PreconditionFailed, match="KMS Initialize failed"):
            probe.keyprov(uri="self", time="next-period")
        with pytest.raises(PreconditionFailed, match="HTTP 401"):
            probe.certcache("current")
        assert [e.status for e in probe.exchanges] == [401, 401]
        assert probe.init_response() is None


def test_a_step_the_probe_cannot_build_is_a_usage_error_never_sent(probe: Probe) -> None:
    exchange = probe.send({"request": "init", "body": "poetry"})
    assert exchange.error_kind == "usage" and "unknown body 'poetry'" in (exchange.error or "")
    assert exchange.status is None and probe.exchanges == [exchange]
    assert probe.send({"request": "teleport"}).error_kind == "usage"


# -- transport ---------------------------------------------------------------------------


def plain_target(base_url: str, *, timeout_s: float = 2.0, **settings: Any) -> Target:
    return Target(
        path=Path("probe-test.toml"),
        target=TargetSettings(base_url=base_url, timeout_s=timeout_s, **settings),
        profile=ProfileSettings(),
        pics=Pics(),
        pixit=Pixit(kms_uri="kms.example.org"),
        users=(User("sip:alice@example.org", Secret(b"tok-en")),),
        tokens=NegativeTokens(),
    )


def timed_init(target: Target) -> tuple[float, Any]:
    with Probe(target, R17) as probe:
        started = time.monotonic()
        exchange = probe.init()
        return time.monotonic() - started, exchange


def test_silent_server_times_out_within_the_timeout() -> None:
    with raw_server(silent) as server:
        took, exchange = timed_init(plain_target(server.base_url, timeout_s=0.5))
    assert exchange.error_kind == "timeout" and exchange.status is None
    assert "0.5 s" in exchange.error
    assert 0.4 <= took < 1.5


@pytest.mark.parametrize("where", ["head", "body"])
def test_dripping_server_cannot_outlast_the_deadline(where: str) -> None:
    response = http_response("200 OK", b"x" * 100)
    head, _, body = response.partition(b"\r\n\r\n")

    def respond(conn: Any, stop: Any) -> None:
        if where == "body":
            conn.sendall(head + b"\r\n\r\n")
            drip(body)(conn, stop)
        else:
            drip(response)(conn, stop)

    with raw_server(respond) as server:
        took, exchange = timed_init(plain_target(server.base_url, timeout_s=1.0))
    assert exchange.error_kind == "timeout", exchange.error
    assert took < 2.0  # without the deadline it would take 20 s or more
    if where == "body":
        assert exchange.status == 200 and 0 < len(exchange.body) < 100


def test_body_over_the_cap_is_cut_and_named() -> None:
    with raw_server(fixed(http_response("200 OK", b"a" * 5000))) as server:
        _, exchange = timed_init(plain_target(server.base_url, max_body_bytes=1000))
    assert exchange.status == 200 and exchange.truncated
    assert exchange.body == b"a" * 1000
    assert (exchange.error_kind, exchange.error) == (
        "too-large",
        "response body exceeds 1000 bytes",
    )


def test_redirect_is_recorded_not_followed() -> None:
    location = "Location: https://elsewhere.example/keymanagement/identity/v1/init"
    with raw_server(fixed(http_response("302 Found", headers=(location,)))) as server:
        with Probe(plain_target(server.base_url), R17) as probe:
            exchange = probe.init()
            assert len(probe.exchanges) == 1
        assert len(server.requests) == 1
    assert exchange.status == 302 and exchange.error is None
    assert exchange.header("location") == location.split(": ", 1)[1]


def test_request_goes_over_the_wire_as_recorded() -> None:
    with raw_server(fixed(http_response("200 OK", b"<x/>"))) as server:
        with Probe(plain_target(server.base_url), R17) as probe:
            exchange = probe.raw("GET", "/keymanagement/identity/v1/../init")
            keyprov = probe.keyprov(uri="sip:a@b.example", body="request")
        first, second = server.requests
    assert first.startswith(b"GET /keymanagement/identity/v1/../init HTTP/1.1\r\n")
    assert exchange.request.path == "/keymanagement/identity/v1/../init"
    assert b"\r\nAuthorization: Bearer tok-en\r\n" in first + b"\r\n"
    assert second.startswith(
        b"POST /keymanagement/identity/v1/keyprov/sip%3Aa%40b.example HTTP/1.1\r\n"
    )
    sent_headers = dict(keyprov.request.headers)
    assert sent_headers["Content-Type"] == "application/xml"
    assert sent_headers["Content-Length"] == str(len(keyprov.request.body))
    assert exchange.tls is None  # plain HTTP: no TLS facts


def test_unsendable_token_is_a_usage_error_that_does_not_quote_it() -> None:
    target = plain_target("http://127.0.0.1:1/keymanagement/identity/v1")
    broken = replace(target, users=(User(ALICE, Secret(b"s3cr3t\r\nX-Injected: 1")),))
    with raw_server(fixed(http_response("200 OK"))) as server:
        broken = replace(broken, target=replace(broken.target, base_url=server.base_url))
        _, exchange = timed_init(broken)
        assert not any(b"X-Injected" in head for head in server.requests)
    assert exchange.error_kind == "usage" and exchange.status is None
    assert "s3cr3t" not in (exchange.error or "")


def test_server_certificate_from_another_ca_is_a_tls_error(tmp_path: Path, kms: ServedKms) -> None:
    other = make_pki(tmp_path / "other", "some other CA")
    with raw_server(fixed(http_response("200 OK")), tls=other.server_context()) as server:
        trusting_kms_ca = plain_target(server.https_base_url, ca_file=kms.target.target.ca_file)
        _, refused = timed_init(trusting_kms_ca)
        _, unverified = timed_init(plain_target(server.https_base_url, verify_tls=False))
    assert refused.error_kind == "tls" and refused.status is None
    assert refused.error.startswith("TLS: certificate verify failed: ")
    assert "\n" not in refused.error
    assert unverified.status == 200 and unverified.tls is not None
    assert unverified.tls.peer_issuer == "CN=some other CA"


def test_hostname_mismatch_is_a_tls_error(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "named", "test CA", dns="kms.elsewhere.example")
    with raw_server(fixed(http_response("200 OK")), tls=pki.server_context()) as server:
        _, exchange = timed_init(plain_target(server.https_base_url, ca_file=pki.ca_file))
    assert exchange.error_kind == "tls"
    assert "certificate verify failed" in exchange.error and "mismatch" in exchange.error


def test_refused_connection_is_a_connect_error() -> None:
    port = refused_port()
    took, exchange = timed_init(plain_target(f"http://127.0.0.1:{port}/keymanagement/identity/v1"))
    assert exchange.error_kind == "connect" and exchange.status is None
    assert "refused" in exchange.error.lower()
    assert took < 1.0


def test_plain_http_to_the_https_port_is_recorded(probe: Probe, kms: ServedKms) -> None:
    exchange = probe.init(scheme="http")
    port = re.search(r":(\d+)/", kms.target.target.base_url)
    assert port is not None
    assert exchange.request.url.startswith(f"http://127.0.0.1:{port.group(1)}/")
    assert exchange.error_kind == "protocol" or (exchange.status or 0) >= 400


def test_in_process_transport_is_used_and_gives_no_tls_facts() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"<ok/>", headers={"Content-Type": "application/xml"})

    target = plain_target("https://kms.test/keymanagement/identity/v1")
    with Probe(target, R17, transport=httpx.MockTransport(answer)) as probe:
        exchange = probe.keyprov(uri="self", body="request")
    assert exchange.status == 200 and exchange.body == b"<ok/>" and exchange.tls is None
    (request,) = seen
    assert request.url.raw_path == b"/keymanagement/identity/v1/keyprov/sip%3Aalice%40example.org"
    assert request.headers["authorization"] == "Bearer tok-en"
    assert request.content == exchange.request.body
    assert exchange.content_type == "application/xml"
    assert exchange.request.path == request.url.raw_path.decode()


def test_clock_drives_the_request_time() -> None:
    instant = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    target = plain_target("https://kms.test/keymanagement/identity/v1")
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with Probe(target, R17, transport=transport, clock=lambda: instant) as probe:
        plain = request_root(probe.init(body="request").request.body)
        stale = request_root(probe.init(body="request", fields={"Time": "stale"}).request.body)
    assert child_text(plain, "Time") == "2030-05-06T07:08:09Z"
    assert child_text(stale, "Time") == (instant - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
