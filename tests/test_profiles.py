"""The profile registry: names, defaults, and agreement between each profile and its XSD."""

from __future__ import annotations

import dataclasses

import pytest
import xmlschema

from conformance.profiles import (
    DEFAULT_PROFILE_NAME,
    KMS_INTERFACE_NS,
    PROFILES,
    ProfileError,
    get_profile,
    load_schema,
)

NAMES = ["ts33180-r16", "ts33180-r17", "rel13-legacy"]


def test_registry_names_and_default() -> None:
    assert sorted(PROFILES) == sorted(NAMES)
    assert DEFAULT_PROFILE_NAME == "ts33180-r17"
    assert get_profile() is get_profile("ts33180-r17")


def test_unknown_profile_error_lists_the_known_names() -> None:
    with pytest.raises(ProfileError, match="unknown profile 'rel18'") as caught:
        get_profile("rel18")
    for name in NAMES:
        assert name in str(caught.value)


def test_profiles_are_frozen() -> None:
    profile = get_profile("ts33180-r17")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.namespace = "urn:other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        profile.expected_versions["KmsResponse"] = "9.9.9"  # type: ignore[index]


@pytest.mark.parametrize("name", NAMES)
def test_expected_versions(name: str) -> None:
    assert dict(get_profile(name).expected_versions) == {
        "KmsResponse": "1.0.0",
        "KmsRequest": "1.1.0",
        "KmsKeyProv": "1.0.0",
        "KmsKeySet": "1.1.0",
        "KmsCertCache": "1.0.0",
        "KmsInit": "1.0.0",
        "KmsCertificate": "1.1.0",
    }


def test_release_differences() -> None:
    r16, r17, legacy = (get_profile(n) for n in NAMES)
    assert r17.has_trk_id_elements and r17.has_lookup
    assert not (r16.has_trk_id_elements or r16.has_lookup)
    assert r16.require_xsi_type and r17.require_xsi_type and legacy.lenient
    assert legacy.response_child_order[:2] == ("KmsUri", "UserUri")
    assert r17.response_child_order[-2:] == ("TrK-ID", "Signature-ID")
    assert r17.request_child_order[-3:] == ("ClientError", "TrK-ID", "Signature-ID")
    assert "http://www.w3.org/2009/xmlenc11#aes128-gcm" in r17.message_encryption_algorithms
    assert legacy.namespace_configurable and not r17.namespace_configurable
    for profile in (r16, r17, legacy):
        assert profile.user_id_encoding == "base64"
        assert set(profile.user_id_encodings) == {"base64", "hex"}
        assert profile.krr_namespace == "urn:3gpp:ns:mcsecKMSKRR:1.0"


def test_token_scopes_per_release() -> None:
    r16, r17, legacy = (get_profile(n) for n in NAMES)
    assert set(r17.token_scopes) == {
        "3gpp:mc:ptt_key_management_service",
        "3gpp:mc:video_key_management_service",
        "3gpp:mc:data_key_management_service",
    }
    assert set(r16.token_scopes) == {*r17.token_scopes, "3gpp:mcptt:key_management_server"}
    assert "3gpp:mcptt:key_management_server" in legacy.token_scopes
    assert not set(legacy.token_scopes) & set(r17.token_scopes)


def test_default_encoding_must_be_accepted() -> None:
    with pytest.raises(ProfileError, match="not among the accepted"):
        dataclasses.replace(get_profile(), user_id_encoding="hex", user_id_encodings=("base64",))


@pytest.mark.parametrize("name", NAMES)
def test_schema_matches_profile(name: str) -> None:
    profile = get_profile(name)
    schema = load_schema(profile)
    assert schema.target_namespace == profile.namespace == KMS_INTERFACE_NS
    assert _child_names(schema, "KmsResponse") == profile.response_child_order
    assert _child_names(schema, "KmsRequest") == profile.request_child_order
    assert ("KmsLookupType" in schema.types) == profile.has_lookup
    assert schema.types["abstractKeyContentType"].abstract == profile.require_xsi_type
    for element, version in profile.expected_versions.items():
        fixed = _fixed_version(schema, element)
        assert fixed in (None, version), f"{element}: XSD fixes {fixed}, profile expects {version}"


def test_load_schema_is_cached() -> None:
    profile = get_profile("rel13-legacy")
    assert load_schema(profile) is load_schema(profile)
    assert load_schema(profile, "urn:example:a") is load_schema(profile, "urn:example:a")
    assert load_schema(profile, "urn:example:a").target_namespace == "urn:example:a"


def test_fixed_namespace_profiles_refuse_another_namespace() -> None:
    with pytest.raises(ProfileError, match="fixed namespace"):
        load_schema(get_profile("ts33180-r16"), "http://org.csc.kms")
    assert load_schema(get_profile("ts33180-r16"), KMS_INTERFACE_NS) is load_schema(
        get_profile("ts33180-r16")
    )


@pytest.mark.parametrize(
    "namespace", ["", 'urn:x" evil="1', "urn:a b", "http://www.w3.org/2000/09/xmldsig#"]
)
def test_unusable_namespace_is_refused(namespace: str) -> None:
    with pytest.raises(ProfileError, match="namespace"):
        load_schema(get_profile("rel13-legacy"), namespace)


def _child_names(schema: xmlschema.XMLSchema, root: str) -> tuple[str, ...]:
    content = schema.elements[root].type.content
    return tuple(
        e.local_name for e in content.iter_elements() if isinstance(e, xmlschema.XsdElement)
    )


def _fixed_version(schema: xmlschema.XMLSchema, name: str) -> str | None:
    # KmsInit, KmsKeyProv and KmsCertCache are local elements; every one has a type <name>Type.
    attribute = schema.types[f"{name}Type"].attributes.get("Version")
    return None if attribute is None else attribute.fixed
