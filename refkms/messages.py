"""Building KmsResponse documents (D.3.1, D.3.5.1 schema; kms-interface.md sections 5-8, 12).

Element order follows the 3GPP schema; the r17 additions (TrK-ID, Signature-ID, KmsLookup)
follow DESIGN.md section 7. Faults that change the shape of a message act here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from lxml import etree

from conformance.crypto.periods import period_end, period_start
from conformance.crypto.uid import encode_user_id
from refkms.domain import Certificate
from refkms.faults import ActiveFaults
from refkms.keys import KeySet

NS = "urn:3gpp:ns:mcsecKMSInterface:1.0"
WRONG_NS = "urn:3gpp:ns:mcsecKMSInterface:2.0"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {None: NS, "xsi": XSI}
RESPONSE_VERSION = "1.0.0"
CERTIFICATE_VERSION = "1.1.0"
KEY_SET_VERSION = "1.1.0"
MESSAGE_VERSION = "1.0.0"
USER_ID_FORMAT = "2"  # Annex F MIKEY-SAKKE UID (kms-interface.md section 6.2)
PARAMETER_SET = "1"  # RFC 6509 Appendix A

_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

KeyWrapper = Callable[[bytes], etree._Element]


@dataclass(frozen=True)
class Envelope:
    """What every KmsResponse says about its request."""

    user_uri: str
    kms_uri: str
    kms_id: str
    time: datetime
    client_req_url: str


def tag(name: str) -> str:
    return f"{{{NS}}}{name}"


def new_element(name: str, **attributes: str) -> etree._Element:
    """An element of the 3GPP namespace declaring it as the default (for xsi:type QNames)."""
    return etree.Element(tag(name), attributes, nsmap=NSMAP)  # type: ignore[arg-type]


def xml_time(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def kms_response(
    envelope: Envelope,
    message: etree._Element | None,
    faults: ActiveFaults,
    *,
    other_user: str = "",
    other_resource_url: str = "",
    error: tuple[int, str] | None = None,
) -> etree._Element:
    """A KmsResponse with ``message`` as the KmsMessage child, or a KmsError."""
    response = new_element("KmsResponse")
    response.set("Version", "1.1.0" if faults.on("envelope-wrong-version") else RESPONSE_VERSION)
    user_uri = other_user if faults.on("envelope-useruri-other-user") else envelope.user_uri
    kms_uri = "kms.other.example.org" if faults.on("envelope-kmsuri-mismatch") else envelope.kms_uri
    if faults.on("envelope-children-out-of-order"):
        _text(response, "KmsUri", kms_uri)
        _text(response, "UserUri", user_uri)
    else:
        _text(response, "UserUri", user_uri)
        _text(response, "KmsUri", kms_uri)
    if not faults.on("envelope-time-missing"):
        stale = faults.on("envelope-time-stale")
        _text(response, "Time", xml_time(envelope.time - timedelta(days=1 if stale else 0)))
    _text(response, "KmsId", envelope.kms_id)
    other_resource = faults.on("envelope-clientrequrl-other-resource")
    _text(
        response, "ClientReqUrl", other_resource_url if other_resource else envelope.client_req_url
    )
    if message is not None:
        etree.SubElement(response, tag("KmsMessage")).append(message)
    if error is not None:
        error_element = etree.SubElement(response, tag("KmsError"))
        code, text = error
        _text(
            error_element,
            "ErrorCode",
            _reason(code) if faults.on("error-code-not-integer") else str(code),
        )
        _text(error_element, "ErrorMsg", text)
    return response


def add_key_id(response: etree._Element, name: str, key_id: bytes) -> None:
    """Append a TrK-ID or Signature-ID element: base64 of the key ID (DESIGN.md section 7).

    Callers add TrK-ID (encryption) before Signature-ID (signing), the table order.
    """
    _text(response, name, base64.b64encode(key_id).decode("ascii"))


def kms_init(certificate: etree._Element, new_keys: list[etree._Element]) -> etree._Element:
    init = new_element("KmsInit", Version=MESSAGE_VERSION)
    init.append(certificate)
    _append_new_keys(init, new_keys, "KmsInitTkIkType")
    return init


def kms_key_prov(key_sets: list[etree._Element], new_keys: list[etree._Element]) -> etree._Element:
    key_prov = new_element("KmsKeyProv", Version=MESSAGE_VERSION)
    key_prov.extend(key_sets)
    _append_new_keys(key_prov, new_keys, "KmsKeyProvTkIkType")
    return key_prov


def kms_cert_cache(certificates: list[etree._Element], cache_num: int) -> etree._Element:
    cache = new_element("KmsCertCache", Version=MESSAGE_VERSION)
    cache.set("CacheNum", str(cache_num))
    cache.extend(certificates)
    return cache


def kms_lookup(sip_uri: str, kms_uris: list[str]) -> etree._Element:
    """KmsLookup: UserUri then one or more KmsUri (DESIGN.md section 7)."""
    lookup = new_element("KmsLookup", Version=MESSAGE_VERSION)
    _text(lookup, "UserUri", sip_uri)
    for kms_uri in kms_uris:
        _text(lookup, "KmsUri", kms_uri)
    return lookup


def new_key_element(name: str, encrypted_key: etree._Element) -> etree._Element:
    """NewTransportKey / NewIntegrityKey: an EncKeyContentType holding one EncryptedKey."""
    element = new_element(name)
    element.append(encrypted_key)
    return element


def kms_certificate(
    certificate: Certificate, faults: ActiveFaults, now: datetime, *, in_init: bool = False
) -> etree._Element:
    element = new_element("KmsCertificate", Version=CERTIFICATE_VERSION)
    element.set("Role", _role(certificate.role, faults, in_init))
    _text(element, "CertUri", certificate.cert_uri)
    _text(element, "KmsUri", certificate.kms_uri)
    _text(element, "Issuer", certificate.issuer)
    _text(element, "ValidFrom", certificate.valid_from)
    past = xml_time(now - timedelta(days=1))
    _text(element, "ValidTo", past if faults.on("cert-validto-past") else certificate.valid_to)
    _text(element, "Revoked", "true" if faults.on("cert-revoked") else "false")
    _text(element, "UserIdFormat", USER_ID_FORMAT)
    if not faults.on("cert-missing-userkeyperiod"):
        _text(element, "UserKeyPeriod", str(certificate.user_key_period))
    offset = certificate.user_key_offset
    if faults.on("cert-offset-not-below-period"):
        offset = certificate.user_key_period
    _text(element, "UserKeyOffset", str(offset))
    _text(element, "PubEncKey", certificate.pub_enc_key.hex().upper())
    _text(element, "PubAuthKey", certificate.pub_auth_key.hex().upper())
    _text(element, "ParameterSet", "2" if faults.on("cert-parameterset-2") else PARAMETER_SET)
    domains = etree.SubElement(element, tag("KmsDomainList"))
    for domain in certificate.kms_domain_list:
        _text(domains, "KmsDomain", domain)
    return element


def kms_key_set(
    key_set: KeySet,
    certificate: Certificate,
    faults: ActiveFaults,
    *,
    user_id_encoding: str,
    other_user: str,
    wrap: KeyWrapper | None,
) -> etree._Element:
    element = new_element("KmsKeySet", Version=KEY_SET_VERSION)
    kms_uri = certificate.kms_uri
    _text(
        element,
        "KmsUri",
        "kms.other.example.org" if faults.on("keyset-kmsuri-mismatch") else kms_uri,
    )
    cert_uri = certificate.cert_uri
    _text(
        element,
        "CertUri",
        "cert9.kms.example.org" if faults.on("keyset-certuri-mismatch") else cert_uri,
    )
    _text(element, "Issuer", certificate.issuer)
    _text(
        element,
        "UserUri",
        other_user if faults.on("keyset-useruri-other-user") else key_set.user_uri,
    )
    _text(element, "UserID", encode_user_id(key_set.uid, user_id_encoding))
    period, offset = certificate.user_key_period, certificate.user_key_offset
    bracket = (
        key_set.period_no - 1 if faults.on("keyset-validity-wrong-period") else key_set.period_no
    )
    _text(element, "ValidFrom", xml_time(period_start(bracket, period, offset)))
    _text(element, "ValidTo", xml_time(period_end(bracket, period, offset) - timedelta(seconds=1)))
    _text(element, "KeyPeriodNo", str(key_set.period_no))
    _text(element, "Revoked", "true" if faults.on("keyset-revoked") else "false")
    bare = faults.on("keyset-missing-xsi-type")
    _key(element, "UserDecryptKey", key_set.rsk, wrap, bare)
    _key(element, "UserSigningKeySSK", key_set.ssk, wrap, bare)
    _key(element, "UserPubTokenPVT", key_set.pvt, wrap, bare)
    return element


def _key(
    parent: etree._Element, name: str, value: bytes, wrap: KeyWrapper | None, bare: bool
) -> None:
    element = etree.SubElement(parent, tag(name))
    if wrap is not None:
        element.set(f"{{{XSI}}}type", "EncKeyContentType")
        element.append(wrap(value))
        return
    if not bare:
        element.set(f"{{{XSI}}}type", "KeyContentType")
    element.text = value.hex().upper()


def _append_new_keys(
    message: etree._Element, new_keys: list[etree._Element], xsi_type: str
) -> None:
    if new_keys:
        message.set(f"{{{XSI}}}type", xsi_type)
        message.extend(new_keys)


def _role(role: str, faults: ActiveFaults, in_init: bool) -> str:
    if in_init and faults.on("cert-role-external-in-init"):
        return "External"
    if role == "External" and faults.on("certcache-partner-role-root"):
        return "Root"
    return role


def _text(parent: etree._Element, name: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, tag(name))
    # Path segments and error messages echo client input, which may hold characters XML
    # 1.0 cannot carry (NUL, most C0 controls, lone surrogates).
    element.text = _NOT_XML_CHAR.sub("\ufffd", text)
    return element


def _reason(code: int) -> str:
    return {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        405: "MethodNotAllowed",
        413: "PayloadTooLarge",
    }.get(code, "Error")
