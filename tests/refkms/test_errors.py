"""Every refusal is an HTTP 4xx with a KmsError whose ErrorCode is the status (issue 3 item 5).

Bad input never gives a 500 and never stops the server (DESIGN.md section 8).
"""

from __future__ import annotations

import base64

import httpx
import pytest
from lxml import etree
from refkms_testkit import NS, UE, RunningKms, kms_response, parse, request_body, text

from conformance.xmlsec import xmldsig
from refkms.profiles import TOKEN_SCOPE

BOB = "sip:bob@example.org"
OLDER_SCOPE = "3gpp:mcptt:key_management_server"


def assert_kms_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    root = kms_response(parse(response))
    assert text(root, "k:KmsError/k:ErrorCode") == str(status)
    assert text(root, "k:KmsError/k:ErrorMsg")
    assert root.find(f"{{{NS}}}KmsMessage") is None
    assert b"Traceback" not in response.content
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("case", "status", "challenge"),
    [
        ("missing", 401, None),
        ("expired", 401, 'error="invalid_token"'),
        ("malformed", 401, 'error="invalid_token"'),
        ("bad_signature", 401, 'error="invalid_token"'),
        ("wrong_scope", 403, 'error="insufficient_scope"'),
    ],
)
def test_token_problems_are_refused(
    r17: RunningKms, case: str, status: int, challenge: str | None
) -> None:
    negative = r17.domain.tokens.mint_negative_cases(UE, TOKEN_SCOPE)
    if case == "missing":
        response = r17.post("keyprov", authorize=False)
    else:
        response = r17.post("keyprov", token=negative[case])
    assert_kms_error(response, status)
    assert response.headers["www-authenticate"].startswith("Bearer")
    if challenge:
        assert challenge in response.headers["www-authenticate"]


def test_older_scope_is_accepted_by_r16_only(r16: RunningKms, r17: RunningKms) -> None:
    assert r16.post("init", token=r16.token(UE, OLDER_SCOPE)).status_code == 200
    assert_kms_error(r17.post("init", token=r17.token(UE, OLDER_SCOPE)), 403)


def test_another_users_keys_are_refused(r17: RunningKms) -> None:
    assert_kms_error(r17.post("keyprov/sip%3Abob%40example.org"), 403)


@pytest.mark.parametrize(
    ("resource", "method", "status"),
    [
        ("cert/kms.unknown.example", "POST", 404),
        ("bogus", "POST", 404),
        ("keyprov/a/b/c", "POST", 404),
        ("lookup/sip%3Anobody%40unknown.example", "POST", 404),
        ("init", "GET", 405),
        ("keyprov", "PUT", 405),
        ("keyprov/sip%3Auser%40example.org/NOTATIME", "POST", 400),
        ("keyprov/sip%3Auser%40example.org/0000000000000000", "POST", 200),
        ("certcache/abc", "POST", 400),
        ("keyprov/%FF", "POST", 400),
        ("redirect", "POST", 400),
    ],
)
def test_bad_resources(r17: RunningKms, resource: str, method: str, status: int) -> None:
    response = r17.post(resource, method=method)
    if status == 200:
        assert response.status_code == 200
        return
    assert_kms_error(response, status)
    if status == 405:
        assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"kms_uri": "kms.elsewhere.test"}, 400),
        ({"resource": "keyprov"}, 400),
        ({"time": "2014-01-26T10:05:52Z"}, 400),
        ({"user_uri": BOB}, 403),
        ({"trk_id": b"trk.unknown"}, 400),
        ({"drop": "KmsUri"}, 400),
        ({"time": "yesterday"}, 400),
    ],
)
def test_request_body_checks(r17: RunningKms, change: dict[str, object], status: int) -> None:
    body = request_body(
        r17,
        str(change.get("resource", "init")),
        user_uri=str(change.get("user_uri", UE)),
        time=str(change.get("time", "2014-01-26T10:07:14Z")),
    )
    root = etree.fromstring(body)
    if "kms_uri" in change:
        root.find(f"{{{NS}}}KmsUri").text = str(change["kms_uri"])  # type: ignore[union-attr]
    if "drop" in change:
        root.remove(root.find(f"{{{NS}}}{change['drop']}"))  # type: ignore[arg-type]
    if "trk_id" in change:
        etree.SubElement(root, f"{{{NS}}}TrK-ID").text = base64.b64encode(change["trk_id"]).decode()  # type: ignore[arg-type]
    assert_kms_error(r17.post("init", etree.tostring(root)), status)


def test_plain_and_signed_requests_are_served(r17: RunningKms) -> None:
    user = r17.user()
    assert r17.post("init", request_body(r17, "init")).status_code == 200
    signed = signed_request(r17, user.ink, user.ink_id)
    assert r17.post("init", signed).status_code == 200


@pytest.mark.parametrize("problem", ["trk-although-ink", "wrong-hmac", "wrong-signature-id"])
def test_bad_request_signatures_are_refused(r17: RunningKms, problem: str) -> None:
    user = r17.user()
    if problem == "trk-although-ink":
        body = signed_request(r17, user.trk, user.trk_id)
    elif problem == "wrong-hmac":
        body = signed_request(r17, bytes(32), user.ink_id)
    else:
        body = signed_request(r17, user.ink, user.ink_id, signature_id=user.trk_id)
    assert_kms_error(r17.post("init", body), 400)


JUNK_BODIES = {
    "1 MiB junk": bytes(range(256)) * 4096,
    "entity expansion": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            b'<!ENTITY lol%d "&lol%d;&lol%d;&lol%d;&lol%d;">' % (i, i - 1, i - 1, i - 1, i - 1)
            for i in range(1, 10)
        ).replace(b"&lol0;", b"&lol;")
        + b']><KmsRequest xmlns="urn:3gpp:ns:mcsecKMSInterface:1.0">&lol9;</KmsRequest>'
    ),
    "external entity": (
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<KmsRequest xmlns="urn:3gpp:ns:mcsecKMSInterface:1.0">&x;</KmsRequest>'
    ),
    "truncated": b'<KmsRequest xmlns="urn:3gpp:ns:mcsecKMSInterface:1.0"><UserUri>sip:u',
    "wrong root": b"<Foo/>",
    "wrong namespace": b'<KmsRequest xmlns="urn:example"/>',
    "not utf-8": b"<KmsRequest>\xff\xfe</KmsRequest>",
    "signed without signature": b'<SignedKmsRequest xmlns="urn:3gpp:ns:mcsecKMSInterface:1.0"/>',
}


@pytest.mark.parametrize("name", sorted(JUNK_BODIES))
def test_hostile_bodies_get_4xx_and_the_server_keeps_serving(r17: RunningKms, name: str) -> None:
    response = r17.post("init", JUNK_BODIES[name])
    assert 400 <= response.status_code < 500
    assert_kms_error(response, response.status_code)
    assert r17.post("init").status_code == 200


def test_oversized_body_is_413(r17: RunningKms) -> None:
    assert_kms_error(r17.post("init", b"x" * (1024 * 1024)), 413)


def signed_request(
    kms: RunningKms, key: bytes, key_id: bytes, *, signature_id: bytes | None = None
) -> bytes:
    """A SignedKmsRequest: KmsRequest (with Signature-ID) and an HMAC-SHA256 ds:Signature."""
    request = etree.fromstring(request_body(kms, "init"))
    etree.SubElement(request, f"{{{NS}}}Signature-ID").text = base64.b64encode(
        signature_id or key_id
    ).decode()
    signed = etree.Element(f"{{{NS}}}SignedKmsRequest", nsmap={None: NS})  # type: ignore[dict-item]
    signed.append(request)
    xmldsig.sign(request, key, key_id, parent=signed, id_value="request")
    return etree.tostring(signed)


PROBE_PATHS = [
    "cert/%00",
    "lookup/%01%02",
    "keyprov/%2F",
    "certcache/-1",
    "keyprov/sip%3Auser%40example.org/%FF%FF",
    "cert/" + "a" * 5000,
    "init/",
    "",
]
PROBE_BODIES = [
    b"<a>" * 10000,
    b"<?xml version='1.0' encoding='bogus'?><a/>",
    b"<?xml version='1.0' encoding='UTF-16'?><a/>",
    b"<SignedKmsRequest xmlns='urn:3gpp:ns:mcsecKMSInterface:1.0'><KmsRequest/>"
    b"<Signature xmlns='http://www.w3.org/2000/09/xmldsig#'/></SignedKmsRequest>",
    b"<KmsRequest xmlns='urn:3gpp:ns:mcsecKMSInterface:1.0'><UserUri>x\x01</UserUri><KmsUri/>"
    b"<Time>0001-01-01T00:00:00-10:00</Time><ClientReqUrl>::</ClientReqUrl><TrK-ID>!</TrK-ID>"
    b"</KmsRequest>",
]


@pytest.mark.parametrize("resource", PROBE_PATHS)
def test_probe_paths_never_give_500(r17: RunningKms, resource: str) -> None:
    response = r17.post(resource)
    assert 400 <= response.status_code < 500
    assert_kms_error(response, response.status_code)


@pytest.mark.parametrize("body", PROBE_BODIES, ids=range(len(PROBE_BODIES)))
def test_probe_bodies_never_give_500(r17: RunningKms, body: bytes) -> None:
    response = r17.post("init", body)
    assert 400 <= response.status_code < 500
    assert_kms_error(response, response.status_code)
