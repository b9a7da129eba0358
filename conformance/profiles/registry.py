"""The named release profiles and their lookup (DESIGN.md section 7)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from conformance.profiles.profile import KMS_INTERFACE_NS, Profile, ProfileError
from conformance.profiles.schemas import KRR_NS

DEFAULT_PROFILE_NAME: Final = "ts33180-r17"


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name`` (the default profile when ``None``)."""
    wanted = DEFAULT_PROFILE_NAME if name is None else name
    try:
        return PROFILES[wanted]
    except KeyError:
        raise ProfileError(
            f"unknown profile {wanted!r}; known profiles: {', '.join(sorted(PROFILES))}"
        ) from None


# Versions fixed by the 3GPP schema, plus the spec-example values for the two it leaves
# open (KmsInit 1.0.0, KmsCertificate 1.1.0): kms-interface.md sections 4-8, REQ-079.
_EXPECTED_VERSIONS: Final = {
    "KmsResponse": "1.0.0",
    "KmsRequest": "1.1.0",
    "KmsKeyProv": "1.0.0",
    "KmsKeySet": "1.1.0",
    "KmsCertCache": "1.0.0",
    "KmsInit": "1.0.0",
    "KmsCertificate": "1.1.0",
}

_RESPONSE_ORDER: Final = (
    "UserUri",
    "KmsUri",
    "Time",
    "KmsId",
    "ClientReqUrl",
    "KmsMessage",
    "KmsError",
)
_REQUEST_ORDER: Final = (
    "UserUri",
    "KmsUri",
    "Time",
    "ClientId",
    "DeviceId",
    "ClientReqUrl",
    "KrrList",
    "ClientError",
)
_KEY_ID_ELEMENTS: Final = ("TrK-ID", "Signature-ID")
# Rel-13 order, sources.md section 3 row 2; extensions may sit between KmsId and ClientReqUrl.
_REL13_RESPONSE_ORDER: Final = (
    "KmsUri",
    "UserUri",
    "Time",
    "KmsId",
    "ClientReqUrl",
    "KmsMessage",
    "KmsError",
)

# Scopes observed per era: kms-interface.md section 2; sources.md section 3 row 16.
_MC_SCOPES: Final = (
    "3gpp:mc:ptt_key_management_service",
    "3gpp:mc:video_key_management_service",
    "3gpp:mc:data_key_management_service",
)
_REL13_SCOPES: Final = (
    "3gpp:mcptt:key_management_server",
    "3gpp:mcvideo:key_management_server",
    "3gpp:mcdata:key_management_server",
)

# XML Encryption 1.1 AES-GCM, which the seed CR says shall be supported (REQ-125).
_AES128_GCM: Final = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
# RFC 3394 (XML Enc 1.0) and RFC 5649 padded (XML Enc 1.1) wraps; kms-interface.md 9.3,
# sources.md row 13.
_KEY_WRAPS: Final = (
    "http://www.w3.org/2001/04/xmlenc#kw-aes128",
    "http://www.w3.org/2001/04/xmlenc#kw-aes192",
    "http://www.w3.org/2001/04/xmlenc#kw-aes256",
    "http://www.w3.org/2009/xmlenc11#kw-aes-128-pad",
    "http://www.w3.org/2009/xmlenc11#kw-aes-192-pad",
    "http://www.w3.org/2009/xmlenc11#kw-aes-256-pad",
)
# C14N 1.0 with and without comments: both seen, spec value unread (sources.md row 12).
_C14N: Final = (
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
)
_USER_ID_ENCODINGS: Final = ("base64", "hex")  # sources.md row 3: accept both

PROFILES: Final[Mapping[str, Profile]] = MappingProxyType(
    {
        "ts33180-r17": Profile(
            name="ts33180-r17",
            description="TS 33.180 Rel-17 (seed CR): TrK-ID, Signature-ID, KmsLookup, AES-GCM",
            namespace=KMS_INTERFACE_NS,
            schema_file="ts33180-r17/kms-interface.xsd",
            krr_namespace=KRR_NS,
            response_child_order=_RESPONSE_ORDER + _KEY_ID_ELEMENTS,
            request_child_order=_REQUEST_ORDER + _KEY_ID_ELEMENTS,
            user_id_encoding="base64",
            user_id_encodings=_USER_ID_ENCODINGS,
            require_xsi_type=True,
            expected_versions=_EXPECTED_VERSIONS,
            token_scopes=_MC_SCOPES,
            has_trk_id_elements=True,
            has_lookup=True,
            message_encryption_algorithms=(_AES128_GCM,),
            key_wrap_algorithms=_KEY_WRAPS,
            c14n_methods=_C14N,
        ),
        "ts33180-r16": Profile(
            name="ts33180-r16",
            description="TS 33.180 schema as in peer-samples (release inferred)",
            namespace=KMS_INTERFACE_NS,
            schema_file="ts33180-r16/kms-interface.xsd",
            krr_namespace=KRR_NS,
            response_child_order=_RESPONSE_ORDER,
            request_child_order=_REQUEST_ORDER,
            user_id_encoding="base64",
            user_id_encodings=_USER_ID_ENCODINGS,
            require_xsi_type=True,
            expected_versions=_EXPECTED_VERSIONS,
            token_scopes=(*_MC_SCOPES, _REL13_SCOPES[0]),
            has_trk_id_elements=False,
            has_lookup=False,
            # KMSMessage admits a foreign child, so an early Rel-17-style EncryptedData is valid.
            message_encryption_algorithms=(_AES128_GCM,),
            key_wrap_algorithms=_KEY_WRAPS,
            c14n_methods=_C14N,
        ),
        "rel13-legacy": Profile(
            name="rel13-legacy",
            description="TS 33.179 Rel-13: KmsUri first, vendor namespace, TrK only, lenient",
            namespace=KMS_INTERFACE_NS,
            schema_file="rel13-legacy/kms-interface.xsd",
            krr_namespace=KRR_NS,
            response_child_order=_REL13_RESPONSE_ORDER,
            request_child_order=_REQUEST_ORDER,
            user_id_encoding="base64",
            user_id_encodings=_USER_ID_ENCODINGS,
            require_xsi_type=False,
            expected_versions=_EXPECTED_VERSIONS,
            token_scopes=_REL13_SCOPES,
            has_trk_id_elements=False,
            has_lookup=False,
            # Rel-13 protected keys one by one; whole-message encryption came with Rel-17.
            message_encryption_algorithms=(),
            key_wrap_algorithms=_KEY_WRAPS,
            c14n_methods=_C14N,
            namespace_configurable=True,
        ),
    }
)
