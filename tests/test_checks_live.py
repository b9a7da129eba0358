"""The live-run checks (errors, transport, lookup/redirect, consistency) can pass and can fail.

Each check sees a compliant exchange and gives ``ok``, then an exchange shaped like one
fault of the reference KMS (or a real-world mistake) and gives a violation, so none of them
is a check that cannot fail. Exchanges are built here the way the probe records them; the
earlier steps of a case are the engine's duck type (``.exchange``, ``.response``, ``.params``).
"""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conformance.checks import CheckContext, run_check
from conformance.core.exchange import Exchange, RecordedRequest, TlsFacts
from conformance.core.xmlsafe import parse_xml
from conformance.model.messages import KMS_NS, KmsResponse, parse_response
from conformance.profiles import get_profile
from conformance.target.file import (
    LookupEntry,
    NegativeTokens,
    Pics,
    Pixit,
    ProfileSettings,
    Target,
    TargetSettings,
)
from conformance.verdicts.outcomes import Outcome

BASE = "https://kms.example.org/keymanagement/identity/v1"
UE = "sip:user@example.org"
BOB = "sip:bob@example.org"
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
RSK = "04" + "11" * 256
UID_A = base64.b64encode(bytes(range(32))).decode()
UID_B = base64.b64encode(bytes(range(1, 33))).decode()
UNAUTHORIZED = (("www-authenticate", 'Bearer realm="kms"'),)
TLS13 = TlsFacts(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256")


# -- errors.py ----------------------------------------------------------------------------


def test_no_key_material_ok_for_a_kms_error_violation_for_a_key_set() -> None:
    assert outcome("error.no-key-material", refused(403)) is Outcome.OK
    served = exchange(200, keyprov_body())
    assert outcome("error.no-key-material", served) is Outcome.WARNING


def test_no_key_material_sees_keys_in_a_body_that_is_no_kms_response() -> None:
    stray = b'<Other xmlns="urn:x"><UserSigningKeySSK>00</UserSigningKeySSK></Other>'
    assert outcome("error.no-key-material", exchange(400, stray)) is Outcome.WARNING
    assert outcome("error.no-key-material", exchange(400, b"not xml")) is Outcome.OK


def test_www_authenticate_wants_a_bearer_challenge_on_401() -> None:
    assert outcome("error.www-authenticate", refused(401, UNAUTHORIZED)) is Outcome.OK
    assert outcome("error.www-authenticate", refused(401)) is Outcome.WARNING
    basic = (("WWW-Authenticate", 'Basic realm="kms"'),)
    assert outcome("error.www-authenticate", refused(401, basic)) is Outcome.WARNING
    assert outcome("error.www-authenticate", refused(403)) is Outcome.SKIPPED


def test_invalid_token_wants_401_invalid_token() -> None:
    good = (("WWW-Authenticate", 'Bearer realm="kms", error="invalid_token"'),)
    assert outcome("error.invalid-token", refused(401, good)) is Outcome.OK
    assert outcome("error.invalid-token", refused(401, UNAUTHORIZED)) is Outcome.WARNING
    accepted = exchange(200, keyprov_body())
    result = run_check("error.invalid-token", context(accepted))
    assert result.outcome is Outcome.WARNING and "accepted" in result.message


def test_insufficient_scope_accepts_403_insufficient_scope_or_401() -> None:
    scoped = (("WWW-Authenticate", 'Bearer error="insufficient_scope", scope="x"'),)
    assert outcome("error.insufficient-scope", refused(403, scoped)) is Outcome.OK
    assert outcome("error.insufficient-scope", refused(401, UNAUTHORIZED)) is Outcome.OK
    assert outcome("error.insufficient-scope", refused(403)) is Outcome.WARNING
    accepted = exchange(200, keyprov_body())
    assert outcome("error.insufficient-scope", accepted) is Outcome.WARNING


def test_field_order_wants_error_code_then_error_msg() -> None:
    assert outcome("error.field-order", refused(404)) is Outcome.OK
    swapped = envelope("<KmsError><ErrorMsg>no</ErrorMsg><ErrorCode>404</ErrorCode></KmsError>")
    assert outcome("error.field-order", exchange(404, swapped)) is Outcome.VIOLATION
    assert outcome("error.field-order", exchange(200, keyprov_body())) is Outcome.SKIPPED


def test_code_matches_status() -> None:
    assert outcome("error.code-matches-status", refused(404)) is Outcome.OK
    mismatch = envelope("<KmsError><ErrorCode>1</ErrorCode><ErrorMsg>x</ErrorMsg></KmsError>")
    assert outcome("error.code-matches-status", exchange(404, mismatch)) is Outcome.WARNING


def test_still_serving_after_a_hostile_step() -> None:
    junk = earlier(refused(413))
    after = exchange(200, init_body())
    assert outcome("error.still-serving", after, history=[junk]) is Outcome.OK
    gone = exchange(None, b"", error="connection refused")
    assert outcome("error.still-serving", gone, history=[junk]) is Outcome.WARNING
    crashed = exchange(500, b"")
    assert outcome("error.still-serving", crashed, history=[junk]) is Outcome.WARNING
    assert outcome("error.still-serving", after) is Outcome.SKIPPED


# -- transport.py -------------------------------------------------------------------------


def test_content_type_xml() -> None:
    assert outcome("transport.content-type-xml", exchange(200, init_body())) is Outcome.OK
    soap = exchange(200, init_body(), content_type="application/soap+xml")
    assert outcome("transport.content-type-xml", soap) is Outcome.OK
    plain = exchange(200, init_body(), content_type="text/plain")
    assert outcome("transport.content-type-xml", plain) is Outcome.VIOLATION
    assert outcome("transport.content-type-xml", exchange(204, b"")) is Outcome.SKIPPED


def test_cache_control() -> None:
    assert outcome("transport.cache-control", exchange(200, keyprov_body())) is Outcome.OK
    private = exchange(200, keyprov_body(), cache="private, no-cache")
    assert outcome("transport.cache-control", private) is Outcome.OK
    public = exchange(200, keyprov_body(), cache="max-age=600")
    assert outcome("transport.cache-control", public) is Outcome.WARNING
    assert outcome("transport.cache-control", exchange(200, keyprov_body(), cache=None)) is (
        Outcome.WARNING
    )


def test_tls_wants_1_2_or_newer() -> None:
    assert outcome("transport.tls", exchange(200, init_body())) is Outcome.OK
    old = exchange(200, init_body(), tls=TlsFacts(version="TLSv1.1"))
    assert outcome("transport.tls", old) is Outcome.VIOLATION
    none = exchange(200, init_body(), tls=None)
    assert outcome("transport.tls", none) is Outcome.VIOLATION
    plain = exchange(200, init_body(), url=BASE.replace("https", "http") + "/init", tls=None)
    assert outcome("transport.tls", plain) is Outcome.SKIPPED


def test_http_refused() -> None:
    url = BASE.replace("https", "http") + "/keyprov"
    refused_connection = exchange(None, b"", url=url, tls=None, error="connection reset")
    assert outcome("transport.http-refused", refused_connection) is Outcome.OK
    redirected = exchange(301, b"", url=url, tls=None, location=BASE + "/keyprov")
    assert outcome("transport.http-refused", redirected) is Outcome.OK
    served = exchange(200, keyprov_body(), url=url, tls=None)
    assert outcome("transport.http-refused", served) is Outcome.VIOLATION
    assert outcome("transport.http-refused", exchange(200, keyprov_body())) is Outcome.SKIPPED


# -- lookup.py ----------------------------------------------------------------------------


def test_lookup_present() -> None:
    assert outcome("lookup.present", exchange(200, lookup_body())) is Outcome.OK
    assert outcome("lookup.present", exchange(200, init_body())) is Outcome.VIOLATION


def test_lookup_user_uri() -> None:
    params = {"requested_sip_uri": "sip:dave@partner.example.net"}
    good = exchange(200, lookup_body())
    assert outcome("lookup.user-uri", good, params=params) is Outcome.OK
    other = exchange(200, lookup_body(user="sip:eve@partner.example.net"))
    assert outcome("lookup.user-uri", other, params=params) is Outcome.WARNING


def test_lookup_kms_uri_follows_the_pixit() -> None:
    params = {"requested_sip_uri": "sip:dave@partner.example.net"}
    good = exchange(200, lookup_body())
    assert outcome("lookup.kms-uri", good, params=params) is Outcome.OK
    own = exchange(200, lookup_body(kms="kms.example.org"))
    assert outcome("lookup.kms-uri", own, params=params) is Outcome.WARNING
    stranger = {"requested_sip_uri": "sip:nobody@unknown.example"}
    assert outcome("lookup.kms-uri", good, params=stranger) is Outcome.SKIPPED


def test_redirect_no_content() -> None:
    assert outcome("redirect.no-content", exchange(204, b"")) is Outcome.OK
    assert outcome("redirect.no-content", exchange(200, envelope(""))) is Outcome.OK
    assert outcome("redirect.no-content", exchange(200, init_body())) is Outcome.WARNING
    assert outcome("redirect.no-content", refused(400)) is Outcome.WARNING


# -- consistency.py -----------------------------------------------------------------------


def test_rsk_and_uid_stable() -> None:
    first = earlier(exchange(200, keyprov_body()))
    same = exchange(200, keyprov_body())
    assert outcome("consistency.rsk-stable", same, history=[first]) is Outcome.OK
    assert outcome("consistency.uid-stable", same, history=[first]) is Outcome.OK
    changed = exchange(200, keyprov_body(rsk="04" + "22" * 256, uid=UID_B))
    assert outcome("consistency.rsk-stable", changed, history=[first]) is Outcome.VIOLATION
    assert outcome("consistency.uid-stable", changed, history=[first]) is Outcome.VIOLATION
    assert outcome("consistency.rsk-stable", same) is Outcome.SKIPPED


def test_uids_differ() -> None:
    alice = earlier(exchange(200, keyprov_body()))
    bob = exchange(200, keyprov_body(user=BOB, uid=UID_B))
    assert outcome("consistency.uids-differ", bob, history=[alice]) is Outcome.OK
    bob_same_uid = exchange(200, keyprov_body(user=BOB, uid=UID_A))
    assert outcome("consistency.uids-differ", bob_same_uid, history=[alice]) is Outcome.VIOLATION
    next_period = exchange(200, keyprov_body(period=6))
    assert outcome("consistency.uids-differ", next_period, history=[alice]) is Outcome.VIOLATION


def test_cert_stable() -> None:
    first = earlier(exchange(200, init_body()))
    assert outcome("consistency.cert-stable", exchange(200, init_body()), history=[first]) is (
        Outcome.OK
    )
    rekeyed = exchange(200, init_body(kpak="04" + "ab" * 64))
    assert outcome("consistency.cert-stable", rekeyed, history=[first]) is Outcome.WARNING


def test_cache_num() -> None:
    params = {"request_path": "/keymanagement/identity/v1/certcache/3"}
    same = exchange(200, cache_body(3))
    assert outcome("consistency.cachenum", same, params=params) is Outcome.OK
    regressed = exchange(200, cache_body(2))
    assert outcome("consistency.cachenum", regressed, params=params) is Outcome.WARNING
    assert outcome("consistency.cachenum", refused(400), params=params) is Outcome.WARNING
    plain = {"request_path": "/keymanagement/identity/v1/certcache"}
    assert outcome("consistency.cachenum", same, params=plain) is Outcome.SKIPPED


# -- helpers ------------------------------------------------------------------------------


def outcome(
    name: str,
    recorded: Exchange,
    *,
    params: dict[str, Any] | None = None,
    history: list[Any] | None = None,
) -> Outcome:
    return run_check(name, context(recorded, params=params, history=history)).outcome


def context(
    recorded: Exchange,
    *,
    params: dict[str, Any] | None = None,
    history: list[Any] | None = None,
) -> CheckContext:
    return CheckContext(
        profile=get_profile("ts33180-r17"),
        response=parsed(recorded.body),
        raw=parsed(recorded.body),
        params=params or {},
        exchange=recorded,
        target=TARGET,
        history=history or [],
    )


def earlier(recorded: Exchange) -> SimpleNamespace:
    return SimpleNamespace(exchange=recorded, response=parsed(recorded.body), params={})


def parsed(body: bytes) -> KmsResponse | None:
    try:
        return parse_response(parse_xml(body))
    except ValueError:
        return None


def exchange(
    status: int | None,
    body: bytes,
    *,
    url: str = BASE + "/keyprov",
    tls: TlsFacts | None = TLS13,
    content_type: str = "application/xml",
    cache: str | None = "no-store",
    headers: tuple[tuple[str, str], ...] = (),
    location: str | None = None,
    error: str | None = None,
) -> Exchange:
    response_headers = [("Content-Type", content_type), *headers]
    if cache is not None:
        response_headers.append(("Cache-Control", cache))
    if location is not None:
        response_headers.append(("Location", location))
    request = RecordedRequest("POST", url, url.split("example.org", 1)[-1], (), b"")
    return Exchange(
        "step1",
        request,
        status=status,
        headers=tuple(response_headers),
        body=body,
        tls=tls,
        error=error,
    )


def refused(status: int, headers: tuple[tuple[str, str], ...] = ()) -> Exchange:
    error = f"<KmsError><ErrorCode>{status}</ErrorCode><ErrorMsg>refused</ErrorMsg></KmsError>"
    return exchange(status, envelope(error), headers=headers)


def envelope(inner: str, user: str = UE) -> bytes:
    return (
        f'<KmsResponse xmlns="{KMS_NS}" {XSI} Version="1.0.0"><UserUri>{user}</UserUri>'
        "<KmsUri>kms.example.org</KmsUri><Time>2014-01-26T10:07:14Z</Time>"
        f"<ClientReqUrl>{BASE}/keyprov</ClientReqUrl>{inner}</KmsResponse>"
    ).encode()


def keyprov_body(user: str = UE, uid: str = UID_A, period: int = 5, rsk: str = RSK) -> bytes:
    key_set = (
        '<KmsKeySet Version="1.1.0"><KmsUri>kms.example.org</KmsUri>'
        f"<UserUri>{user}</UserUri><UserID>{uid}</UserID><KeyPeriodNo>{period}</KeyPeriodNo>"
        f'<UserDecryptKey xsi:type="KeyContentType">{rsk}</UserDecryptKey>'
        f'<UserSigningKeySSK xsi:type="KeyContentType">{"33" * 32}</UserSigningKeySSK>'
        f'<UserPubTokenPVT xsi:type="KeyContentType">04{"44" * 64}</UserPubTokenPVT>'
        "</KmsKeySet>"
    )
    return envelope(f'<KmsMessage><KmsKeyProv Version="1.0.0">{key_set}</KmsKeyProv></KmsMessage>')


def init_body(kpak: str = "04" + "cd" * 64) -> bytes:
    certificate = (
        '<KmsCertificate Version="1.1.0" Role="Root"><CertUri>cert1.kms.example.org</CertUri>'
        "<KmsUri>kms.example.org</KmsUri><UserIdFormat>2</UserIdFormat>"
        "<UserKeyPeriod>2592000</UserKeyPeriod><UserKeyOffset>0</UserKeyOffset>"
        f"<PubEncKey>04{'ef' * 256}</PubEncKey><PubAuthKey>{kpak}</PubAuthKey>"
        "</KmsCertificate>"
    )
    return envelope(f'<KmsMessage><KmsInit Version="1.0.0">{certificate}</KmsInit></KmsMessage>')


def lookup_body(
    user: str = "sip:dave@partner.example.net", kms: str = "kms.partner.example.net"
) -> bytes:
    lookup = f"<KmsLookup><UserUri>{user}</UserUri><KmsUri>{kms}</KmsUri></KmsLookup>"
    return envelope(f"<KmsMessage>{lookup}</KmsMessage>")


def cache_body(number: int) -> bytes:
    cache = f'<KmsCertCache Version="1.0.0" CacheNum="{number}"/>'
    return envelope(f"<KmsMessage>{cache}</KmsMessage>")


TARGET = Target(
    path=Path("target.toml"),
    target=TargetSettings(base_url=BASE),
    profile=ProfileSettings(),
    pics=Pics(lookup=True, redirect=True),
    pixit=Pixit(
        kms_uri="kms.example.org",
        lookup=(LookupEntry("sip:dave@partner.example.net", "kms.partner.example.net"),),
    ),
    users=(),
    tokens=NegativeTokens(),
)


@pytest.mark.parametrize(
    "name",
    [
        "error.no-key-material",
        "error.www-authenticate",
        "error.invalid-token",
        "error.insufficient-scope",
        "error.field-order",
        "error.code-matches-status",
        "error.still-serving",
        "transport.content-type-xml",
        "transport.cache-control",
        "transport.tls",
        "transport.http-refused",
        "lookup.present",
        "lookup.user-uri",
        "lookup.kms-uri",
        "redirect.no-content",
        "consistency.rsk-stable",
        "consistency.uid-stable",
        "consistency.uids-differ",
        "consistency.cert-stable",
        "consistency.cachenum",
    ],
)
def test_every_check_is_offline_safe(name: str) -> None:
    # Offline (``kms-conformance check``) there is no exchange and no history: skip, never crash.
    bare = CheckContext(profile=get_profile("ts33180-r17"), response=parsed(keyprov_body()))
    assert run_check(name, bare).outcome in set(Outcome)
