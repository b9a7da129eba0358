"""Helpers of the reference KMS tests: real HTTPS servers on ephemeral loopback ports.

No harness code is used here, only ``conformance.crypto`` (issue 3 item 7). Servers run in
``kat`` mode with a fixed clock (2014-01-26T10:07:14Z) and a fixed ECCSI v, so responses
are reproducible and the kms-interface.md section 18.1 key set comes out of the API.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import xmlschema
from lxml import etree

from refkms.config import config_from_mapping
from refkms.domain import Domain
from refkms.faults import ActiveFaults
from refkms.profiles import PROFILES, TOKEN_SCOPE
from refkms.server import running_in_thread
from refkms.state import StateDir

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ["KMS_CONFORMANCE_SHARED"])
PEER_SCHEMA = SHARED / "peer-samples" / "streamwide-sw_mikey_sakke" / "schema.xsd"
SCHEMAS = REPO / "schemas"
NS = "urn:3gpp:ns:mcsecKMSInterface:1.0"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"

UE = "sip:user@example.org"
BOB = "sip:bob@example.org"
CAROL = "sip:carol@example.org"
FIXED_TIME = "2014-01-26T10:07:14Z"
KAT_CONFIG: dict[str, Any] = {
    "kat": True,
    "clock": FIXED_TIME,
    "eccsi_fixed_v": "23456",
    "users": [
        {"uri": UE, "trk_id": "dHJrLjEudXNlcg==", "ink_id": "aW5rLjEudXNlcg=="},
        {"uri": BOB, "trk_id": "dHJrLjEuYm9i", "ink_id": "aW5rLjEuYm9i"},
        {"uri": CAROL, "trk_id": "dHJrLjEuY2Fyb2w="},
    ],
}


@dataclass
class RunningKms:
    """A served domain and an HTTPS client that trusts its CA."""

    domain: Domain
    base_url: str
    client: httpx.Client

    def token(self, user_uri: str = UE, scope: str = TOKEN_SCOPE) -> str:
        return self.domain.tokens.mint(user_uri, scope)

    def post(
        self,
        resource: str,
        body: bytes = b"",
        *,
        user_uri: str = UE,
        token: str | None = None,
        method: str = "POST",
        authorize: bool = True,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/xml"}
        if authorize:
            headers["Authorization"] = f"Bearer {token or self.token(user_uri)}"
        return self.client.request(
            method, f"{self.base_url}/{resource}", content=body, headers=headers
        )

    def user(self, uri: str = UE) -> Any:
        return self.domain.users[uri]


def make_domain(
    state: StateDir,
    profile: str = "ts33180-r17",
    faults: tuple[str, ...] = (),
    protection: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> Domain:
    raw = dict(KAT_CONFIG) | (settings or {})
    if protection is not None:
        raw["protection"] = protection
    return Domain(config_from_mapping(raw), PROFILES[profile], ActiveFaults(faults), state)


@contextmanager
def serving(domain: Domain, state: StateDir) -> Iterator[RunningKms]:
    tls = state.tls()
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    with (
        running_in_thread(domain, tls) as listening,
        httpx.Client(verify=context, timeout=30) as client,
    ):
        yield RunningKms(domain, listening.base_url, client)


@cache
def schema_for(profile: str) -> xmlschema.XMLSchema:
    """The 3GPP schema copy for r16 (issue 3 item 7), the project's own XSD for r17."""
    source = PEER_SCHEMA if profile == "ts33180-r16" else SCHEMAS / "ts33180-r17/kms-interface.xsd"
    return xmlschema.XMLSchema(
        str(source),
        locations={
            DS: str(SCHEMAS / "w3c/xmldsig-core-schema.xsd"),
            XENC: str(SCHEMAS / "w3c/xenc-schema.xsd"),
            "urn:3gpp:ns:mcsecKMSKRR:1.0": str(SCHEMAS / "krr/kms-krr.xsd"),
        },
        use_fallback=False,
        allow="local",
        defuse="always",
    )


def parse(response: httpx.Response) -> etree._Element:
    return etree.fromstring(response.content, etree.XMLParser(resolve_entities=False))


def kms_response(root: etree._Element) -> etree._Element:
    """The KmsResponse of a plain or signed response document."""
    if root.tag == f"{{{NS}}}SignedKmsResponse":
        return root[0]
    return root


def find(element: etree._Element, path: str) -> etree._Element:
    found = element.find(path, {"k": NS, "ds": DS, "xenc": XENC})
    assert found is not None, f"{path} missing in {etree.tostring(element)[:300]!r}"
    return found


def text(element: etree._Element, path: str) -> str:
    return (find(element, path).text or "").strip()


def request_body(
    kms: RunningKms,
    resource: str,
    *,
    user_uri: str = UE,
    time: str = "2014-01-26T10:07:14Z",
    krr: bool = False,
) -> bytes:
    """A schema-shaped KmsRequest for ``resource`` (D.2.2 order)."""
    request = etree.Element(f"{{{NS}}}KmsRequest", nsmap={None: NS}, Version="1.1.0")  # type: ignore[dict-item]
    for name, value in (
        ("UserUri", user_uri),
        ("KmsUri", "kms.example.org"),
        ("Time", time),
        ("ClientReqUrl", f"{kms.base_url}/{resource}"),
    ):
        etree.SubElement(request, f"{{{NS}}}{name}").text = value
    if krr:
        krr_list = etree.SubElement(request, f"{{{NS}}}KrrList")
        etree.SubElement(krr_list, "{urn:3gpp:ns:mcsecKMSKRR:1.0}KmsRedirectResponse")
    return etree.tostring(request)
