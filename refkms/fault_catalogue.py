"""The data of the fault catalogue: the hooks where faults act and one ``Fault`` per
deviation, grouped by the part of Annex D it breaks (issue 3 item 6).

Split from refkms/faults.py (issue 17), which adds the rotation faults
(refkms/rotation_faults.py) and serves the catalogue (names, JSON, text, the faults active
in a running KMS). To add a fault: one ``Fault(...)`` entry here, in its family, naming the
REQ ids it violates, the cases that must catch it and the hook it acts in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HOOK_ROUTING = "refkms.app:ReferenceKms.dispatch / check_method"
HOOK_ACCESS = "refkms.app:ReferenceKms.authorize / keyprov, refkms.tokens:TokenAuthority.verify"
HOOK_REQUEST = "refkms.requests:check_request"
HOOK_RESPONSE = "refkms.app:ReferenceKms.respond"
HOOK_ENVELOPE = "refkms.messages:kms_response"
HOOK_CERTIFICATE = "refkms.messages:kms_certificate"
HOOK_ROOT_KEYS = "refkms.app:ReferenceKms.served_root_certificate"
HOOK_RESOURCES = "refkms.app:ReferenceKms.keyprov / certcache / cert / lookup / redirect"
HOOK_KEYS = "refkms.keys:KeyIssuer"
HOOK_KEYSET = "refkms.messages:kms_key_set"
HOOK_PROTECTION = "refkms.protection:protect_response"
HOOK_ERRORS = "refkms.app:ReferenceKms.error_response"
HOOK_TRANSPORT = "refkms.app:ReferenceKms._xml_response / _headers"

_ENCRYPTED_MESSAGE: tuple[tuple[str, str | bool], ...] = (("encryption", "message"),)
_ENCRYPTED_KEYS: tuple[tuple[str, str | bool], ...] = (("encryption", "keys"),)


@dataclass(frozen=True)
class Fault:
    """One named deviation from TS 33.180 Annex D that the harness must detect."""

    name: str
    description: str
    reqs: tuple[str, ...]
    cases: tuple[str, ...]
    hook: str
    # The protection policy (refkms/config.py [protection]) the reference KMS must run with
    # for the fault's hook to act at all: `run --embedded-fault NAME` starts it so.
    protection: tuple[tuple[str, str | bool], ...] = ()
    # Top-level configuration keys the fault needs (e.g. kms_cert_rotation = true).
    settings: tuple[tuple[str, str | bool], ...] = ()

    def embedded_config(self) -> dict[str, Any]:
        config: dict[str, Any] = dict(self.settings)
        if self.protection:
            config["protection"] = dict(self.protection)
        return config


CATALOGUE: tuple[Fault, ...] = (
    # Envelope (D.3.1, D.3.5.1)
    Fault(
        "envelope-wrong-namespace",
        "KmsResponse in namespace urn:3gpp:ns:mcsecKMSInterface:2.0",
        ("REQ-050", "REQ-051"),
        ("ENV-NS-001", "ENV-NS-002"),
        HOOK_RESPONSE,
    ),
    Fault(
        "envelope-wrong-version",
        "KmsResponse Version is 1.1.0 instead of the fixed 1.0.0",
        ("REQ-052", "REQ-051"),
        ("ENV-VERSION-001", "ENV-VERSION-002"),
        HOOK_ENVELOPE,
    ),
    Fault(
        "envelope-time-missing",
        "KmsResponse has no Time element",
        ("REQ-055", "REQ-051"),
        ("ENV-TIME-001", "ENV-SCHEMA-001"),
        HOOK_ENVELOPE,
    ),
    Fault(
        "envelope-time-stale",
        "KmsResponse Time is one day before the sending time",
        ("REQ-055",),
        ("ENV-TIME-001", "ENV-TIME-002"),
        HOOK_ENVELOPE,
    ),
    Fault(
        "envelope-clientrequrl-other-resource",
        "ClientReqUrl names another resource than the one requested",
        ("REQ-057",),
        ("ENV-CRU-001", "ENV-CRU-002", "ENV-CRU-003"),
        HOOK_ENVELOPE,
    ),
    Fault(
        "envelope-useruri-other-user",
        "KmsResponse UserUri names another configured user",
        ("REQ-053",),
        ("ENV-USERURI-001", "ENV-USERURI-002"),
        HOOK_ENVELOPE,
    ),
    Fault(
        "envelope-kmsuri-mismatch",
        "KmsResponse KmsUri differs from the certificate KmsUri",
        ("REQ-054",),
        ("ENV-KMSURI-001", "ENV-KMSURI-002"),
        HOOK_ENVELOPE,
    ),
    Fault(
        "envelope-children-out-of-order",
        "KmsUri sent before UserUri (Rel-13 order)",
        ("REQ-060", "REQ-051"),
        ("ENV-ORDER-001", "ENV-ORDER-002"),
        HOOK_ENVELOPE,
    ),
    Fault(
        "envelope-wrong-message-type",
        "init answers KmsCertCache, every other request answers KmsInit",
        ("REQ-059", "REQ-004", "REQ-005"),
        ("ENV-MSGTYPE-001", "ENV-MSGTYPE-002"),
        HOOK_RESPONSE,
    ),
    Fault(
        "envelope-error-with-message",
        "error responses carry a KmsMessage next to KmsError",
        ("REQ-065",),
        ("ERR-SHAPE-001", "ERR-CODE-001"),
        HOOK_ERRORS,
    ),
    # Certificate (D.3.2)
    Fault(
        "cert-role-external-in-init",
        "the certificate in KmsInit has Role External",
        ("REQ-071",),
        ("INIT-CERT-ROLE-001",),
        HOOK_CERTIFICATE,
    ),
    Fault(
        "cert-missing-userkeyperiod",
        "the certificate has no UserKeyPeriod element",
        ("REQ-072", "REQ-051"),
        ("INIT-CERT-FIELDS-001", "CERTCACHE-FIELDS-001"),
        HOOK_CERTIFICATE,
    ),
    Fault(
        "cert-offset-not-below-period",
        "the certificate has UserKeyOffset = UserKeyPeriod",
        ("REQ-077",),
        ("INIT-CERT-PERIOD-001", "CERTCACHE-FIELDS-001"),
        HOOK_CERTIFICATE,
    ),
    Fault(
        "cert-pubauthkey-off-curve",
        "PubAuthKey is KPAK with y + 1: not a P-256 point",
        ("REQ-074",),
        ("INIT-CERT-KPAK-001", "CERT-OWN-001"),
        HOOK_ROOT_KEYS,
    ),
    Fault(
        "cert-pubenckey-outside-subgroup",
        "PubEncKey is Z_T + (0,0): on the SAKKE curve but of order 2q",
        ("REQ-073",),
        ("INIT-CERT-ZT-001", "CERT-OWN-001"),
        HOOK_ROOT_KEYS,
    ),
    Fault(
        "cert-parameterset-2",
        "the certificate claims SAKKE ParameterSet 2",
        ("REQ-075",),
        ("INIT-CERT-PARAMSET-001",),
        HOOK_CERTIFICATE,
    ),
    Fault(
        "cert-validto-past",
        "the certificate ValidTo lies one day in the past",
        ("REQ-078",),
        ("INIT-CERT-VALIDITY-001", "INIT-CERT-REVOKED-001"),
        HOOK_CERTIFICATE,
    ),
    Fault(
        "cert-revoked",
        "the active Root certificate says Revoked true",
        ("REQ-078",),
        ("INIT-CERT-REVOKED-001", "INIT-CERT-VALIDITY-001"),
        HOOK_CERTIFICATE,
    ),
    Fault(
        "cert-not-stable",
        "every init answers a certificate with a fresh CertUri and KPAK",
        ("REQ-080",),
        ("INIT-CERT-STABLE-001", "INIT-CERT-STABLE-002"),
        HOOK_ROOT_KEYS,
    ),
    # CertCache and Cert (D.3.1, D.3.2)
    Fault(
        "certcache-partner-role-root",
        "partner certificates in the cache say Role Root",
        ("REQ-113",),
        ("CERTCACHE-ROLE-001", "CERT-KEYS-001"),
        HOOK_CERTIFICATE,
    ),
    Fault(
        "certcache-cachenum-regresses",
        "certcache/<current n> answers CacheNum n - 1",
        ("REQ-115",),
        ("CERTCACHE-NUM-001",),
        HOOK_RESOURCES,
    ),
    Fault(
        "cert-other-certificate",
        "cert/<partner> answers the KMS's own certificate",
        ("REQ-116", "REQ-011"),
        ("CERT-MATCH-001",),
        HOOK_RESOURCES,
    ),
    Fault(
        "cert-unknown-answered-200",
        "cert/<unknown KMS> answers 200 with an empty cache",
        ("REQ-117",),
        ("CERT-UNKNOWN-001",),
        HOOK_RESOURCES,
    ),
    Fault(
        "lookup-wrong-kms-uri",
        "lookup answers this KMS's URI for every SIP URI",
        ("REQ-012",),
        ("LOOKUP-KMSURI-002",),
        HOOK_RESOURCES,
    ),
    Fault(
        "redirect-answered-with-kmsmessage",
        "redirect upload answers 200 with a KmsInit",
        ("REQ-014",),
        ("REDIRECT-EMPTY-001",),
        HOOK_RESOURCES,
    ),
    # Key set (D.3.3, Annex F, RFC 6507/6508)
    Fault(
        "uid-ascii-hex",
        "keys are issued for the 64-octet ASCII-hex form of the UID",
        ("REQ-100", "REQ-102"),
        ("KEYPROV-ECCSI-001", "KEYPROV-SAKKE-001"),
        HOOK_KEYS,
    ),
    Fault(
        "uid-first-octet-0x30",
        "the UID KDF input starts with ASCII '0' instead of FC 0x00",
        ("REQ-097", "REQ-098"),
        ("KEYPROV-UID-001", "KEYPROV-UID-003"),
        HOOK_KEYS,
    ),
    Fault(
        "period-unix-epoch",
        "KeyPeriodNo and UID counted from the Unix epoch, not NTP",
        ("REQ-095", "REQ-097"),
        ("KEYPROV-PERIOD-001",),
        HOOK_KEYS,
    ),
    Fault(
        "period-off-by-one",
        "plain keyprov delivers the next key period instead of the current",
        ("REQ-095",),
        ("KEYPROV-PERIOD-002", "KEYPROV-PERIOD-001"),
        HOOK_KEYS,
    ),
    Fault(
        "keyprov-time-ignored",
        "keyprov/<URI>/<time> answers the current period",
        ("REQ-096", "REQ-007"),
        ("KEYPROV-TIME-001", "KEYPROV-TIME-003"),
        HOOK_RESOURCES,
    ),
    Fault(
        "ssk-not-matching-pvt",
        "the PVT comes from another ephemeral v than the SSK",
        ("REQ-100",),
        ("KEYPROV-ECCSI-002", "KEYPROV-ECCSI-001"),
        HOOK_KEYS,
    ),
    Fault(
        "rsk-other-identity",
        "the RSK is issued for the UID of another configured user",
        ("REQ-102",),
        ("KEYPROV-SAKKE-002", "KEYPROV-SAKKE-001"),
        HOOK_KEYS,
    ),
    Fault(
        "rsk-random-point",
        "the RSK is [r]P for a random r",
        ("REQ-102",),
        ("KEYPROV-SAKKE-003", "KEYPROV-SAKKE-001"),
        HOOK_KEYS,
    ),
    Fault(
        "rsk-changes-between-calls",
        "every second keyprov issues the RSK under a stale master secret",
        ("REQ-104", "REQ-102"),
        ("KEYPROV-RSK-STABLE-001", "ROT-PERIOD-002"),
        HOOK_KEYS,
    ),
    Fault(
        "keyset-useruri-other-user",
        "KmsKeySet UserUri names another configured user",
        ("REQ-094",),
        ("KEYPROV-USERURI-001", "KEYPROV-URI-001"),
        HOOK_KEYSET,
    ),
    Fault(
        "keyset-missing-xsi-type",
        "key elements carry bare hex without xsi:type",
        ("REQ-103", "REQ-051"),
        ("KEYPROV-XSITYPE-001", "ENV-SCHEMA-002"),
        HOOK_KEYSET,
    ),
    Fault(
        "keyset-certuri-mismatch",
        "KmsKeySet CertUri differs from the Root certificate",
        ("REQ-093",),
        ("KEYPROV-CERTURI-001",),
        HOOK_KEYSET,
    ),
    Fault(
        "keyset-kmsuri-mismatch",
        "KmsKeySet KmsUri differs from the Root certificate",
        ("REQ-093",),
        ("KEYPROV-KMSURI-001",),
        HOOK_KEYSET,
    ),
    Fault(
        "keyset-revoked",
        "a freshly provisioned KmsKeySet says Revoked true",
        ("REQ-107",),
        ("KEYPROV-REVOKED-001",),
        HOOK_KEYSET,
    ),
    Fault(
        "keyset-validity-wrong-period",
        "ValidFrom/ValidTo bracket the previous key period",
        ("REQ-106",),
        ("KEYPROV-VALIDITY-001",),
        HOOK_KEYSET,
    ),
    # Security: signature (D.1, D.3.1, seed CR)
    Fault(
        "sig-trk-although-ink",
        "signed with the TrK although an InK is provisioned",
        ("REQ-063",),
        ("SEC-SIG-INK-001",),
        HOOK_PROTECTION,
    ),
    Fault(
        "sig-id-wrong-key",
        "signed with the InK but Signature-ID names the TrK",
        ("REQ-062", "REQ-130"),
        ("SEC-SIG-ID-001", "SEC-SIG-VALUE-001"),
        HOOK_PROTECTION,
    ),
    Fault(
        "sig-id-missing",
        "signed response without a Signature-ID element",
        ("REQ-062",),
        ("SEC-SIG-ID-002", "SEC-SIG-ID-001"),
        HOOK_PROTECTION,
    ),
    Fault(
        "sig-hmac-truncated",
        "HMACOutputLength 128 and a 16-octet SignatureValue",
        ("REQ-120",),
        ("SEC-SIG-ALG-001", "SEC-SIG-ALG-002"),
        HOOK_PROTECTION,
    ),
    Fault(
        "sig-not-covering-message",
        "the signature references an extension element, not the KmsResponse",
        ("REQ-122",),
        ("SEC-SIG-SCOPE-001",),
        HOOK_PROTECTION,
    ),
    Fault(
        "sig-value-corrupted",
        "one octet of SignatureValue flipped",
        ("REQ-121", "REQ-130"),
        ("SEC-SIG-VALUE-001", "SEC-SIG-VALUE-002"),
        HOOK_PROTECTION,
    ),
    # Security: encryption (D.3.1, seed CR)
    Fault(
        "enc-wrong-key",
        "KmsMessage encrypted under a key other than the TrK it names",
        ("REQ-061", "REQ-125", "REQ-130"),
        ("SEC-ENC-KEY-001",),
        HOOK_PROTECTION,
        _ENCRYPTED_MESSAGE,
    ),
    Fault(
        "enc-trkid-missing",
        "encrypted KmsMessage without a TrK-ID element",
        ("REQ-061",),
        ("SEC-ENC-TRKID-001", "SEC-ENC-TRKID-002"),
        HOOK_PROTECTION,
        _ENCRYPTED_MESSAGE,
    ),
    Fault(
        "enc-trkid-wrong",
        "TrK-ID and KeyName name another user's TrK",
        ("REQ-061", "REQ-126", "REQ-129"),
        ("SEC-ENC-TRKID-002", "SEC-ENC-TRKID-001"),
        HOOK_PROTECTION,
        _ENCRYPTED_MESSAGE,
    ),
    Fault(
        "enc-keyinfo-differs",
        "EncryptedData KeyName differs from the TrK-ID element",
        ("REQ-126",),
        ("SEC-ENC-KEYINFO-001",),
        HOOK_PROTECTION,
        _ENCRYPTED_MESSAGE,
    ),
    Fault(
        "enc-type-element",
        "EncryptedData Type is xmlenc#Element instead of #Content",
        ("REQ-124",),
        ("SEC-ENC-STRUCT-001", "SEC-ENC-STRUCT-002"),
        HOOK_PROTECTION,
        _ENCRYPTED_MESSAGE,
    ),
    Fault(
        "enc-aes-cbc",
        "KmsMessage encrypted with aes128-cbc instead of aes128-gcm",
        ("REQ-125",),
        ("SEC-ENC-ALG-001",),
        HOOK_PROTECTION,
        _ENCRYPTED_MESSAGE,
    ),
    Fault(
        "enc-gcm-tag-corrupted",
        "the last octet of the GCM tag is flipped",
        ("REQ-125", "REQ-127"),
        ("SEC-ENC-TAG-001",),
        HOOK_PROTECTION,
        _ENCRYPTED_MESSAGE,
    ),
    Fault(
        "enc-plaintext-invalid",
        "the plaintext nests a second KmsMessage element",
        ("REQ-127",),
        ("SEC-ENC-PLAINTEXT-001",),
        HOOK_PROTECTION,
        _ENCRYPTED_MESSAGE,
    ),
    Fault(
        "keys-wrapped-wrong-key",
        "per-key EncryptedKey wrapped under the next TrK, not the current",
        ("REQ-128",),
        ("SEC-WRAP-KEY-001", "SEC-WRAP-KEY-002"),
        HOOK_PROTECTION,
        _ENCRYPTED_KEYS,
    ),
    # Errors and access (D.1, D.2, RFC 6750)
    Fault(
        "auth-no-token-accepted",
        "a request without a token is served as the first user",
        ("REQ-016",),
        ("ERR-AUTH-NOTOKEN-001", "ERR-AUTH-NOTOKEN-002"),
        HOOK_ACCESS,
    ),
    Fault(
        "auth-expired-token-accepted",
        "an expired access token is accepted",
        ("REQ-017",),
        ("ERR-AUTH-EXPIRED-001",),
        HOOK_ACCESS,
    ),
    Fault(
        "auth-bad-signature-accepted",
        "a token with a wrong ES256 signature is accepted",
        ("REQ-017",),
        ("ERR-AUTH-SIG-001",),
        HOOK_ACCESS,
    ),
    Fault(
        "auth-wrong-scope-accepted",
        "a token without the KMS scope is accepted",
        ("REQ-018",),
        ("ERR-AUTH-SCOPE-001",),
        HOOK_ACCESS,
    ),
    Fault(
        "authz-other-users-keys-served",
        "keyprov/<another user's URI> serves their keys",
        ("REQ-019",),
        ("ERR-AUTHZ-OTHERUSER-001", "ERR-AUTHZ-TOKEN-001"),
        HOOK_ACCESS,
    ),
    Fault(
        "request-useruri-not-checked",
        "a KmsRequest naming another UserUri is served",
        ("REQ-036",),
        ("REQUEST-USERURI-001", "REQUEST-USERURI-002"),
        HOOK_REQUEST,
    ),
    Fault(
        "request-stale-time-accepted",
        "a KmsRequest with a stale Time is served",
        ("REQ-035",),
        ("REQUEST-TIME-001", "REQUEST-TIME-002"),
        HOOK_REQUEST,
    ),
    Fault(
        "request-bad-signature-accepted",
        "a SignedKmsRequest with a wrong HMAC is served",
        ("REQ-040",),
        ("REQUEST-SIG-004", "REQUEST-SIG-005"),
        HOOK_REQUEST,
    ),
    Fault(
        "method-get-served",
        "GET is served like POST",
        ("REQ-002",),
        ("ERR-METHOD-001", "ERR-METHOD-002"),
        HOOK_ROUTING,
    ),
    Fault(
        "unknown-path-served",
        "an unknown sub-path answers 200 with a KmsInit",
        ("REQ-141",),
        ("ERR-PATH-001", "TRANSPORT-ROOT-002"),
        HOOK_ROUTING,
    ),
    Fault(
        "error-code-not-integer",
        "KmsError ErrorCode is a reason phrase, not an integer",
        ("REQ-140",),
        ("ERR-CODE-001", "ERR-CODE-003"),
        HOOK_ENVELOPE,
    ),
    Fault(
        "no-cache-control",
        "responses carrying key material have no Cache-Control",
        ("REQ-021",),
        ("TRANSPORT-CACHE-001", "TRANSPORT-CACHE-002"),
        HOOK_TRANSPORT,
    ),
    Fault(
        "content-type-text-plain",
        "responses are labelled text/plain",
        ("REQ-020",),
        ("TRANSPORT-CTYPE-001", "TRANSPORT-CTYPE-002"),
        HOOK_TRANSPORT,
    ),
)
