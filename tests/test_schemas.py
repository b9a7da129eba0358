"""Schema profiles: ts33180-r16 answers like the 3GPP schema; r17 and rel13-legacy differ
only where their release does (issue 4 part 1, DESIGN.md section 7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xmlschema

from conformance.profiles import (
    KMS_INTERFACE_NS,
    get_profile,
    load_schema,
    reference_3gpp_schema,
)
from conformance.profiles.schemas import compile_offline

REPO = Path(__file__).resolve().parents[1]
PEER_DIR = Path(os.environ["KMS_CONFORMANCE_SHARED"]) / "peer-samples" / "streamwide-sw_mikey_sakke"
PEER_SCHEMA = PEER_DIR / "schema.xsd"
SAMPLES = REPO / "tests" / "vectors" / "schema-samples"
VENDOR_NS = "urn:example:vendor-kms"


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(p.parents[1])) for p in paths]


PEER_SAMPLES = sorted(PEER_DIR.glob("*.xml"))
CRAFTED = sorted(SAMPLES.glob("*.xml"))
REFKMS = sorted((SAMPLES / "refkms").glob("*.xml"))
R17_SAMPLES = sorted((SAMPLES / "r17").glob("*.xml"))
LEGACY_SAMPLES = sorted((SAMPLES / "legacy").glob("*.xml"))

# What peer-samples/SOURCES.md reports from xmllint for the two real messages.
PEER_EXPECTED = {"test_init_response.xml": True, "test_key_prov_response.xml": False}


@pytest.fixture(scope="module")
def peer() -> xmlschema.XMLSchema:
    return reference_3gpp_schema(PEER_SCHEMA)


@pytest.fixture(scope="module")
def r16() -> xmlschema.XMLSchema:
    return load_schema(get_profile("ts33180-r16"))


@pytest.fixture(scope="module")
def r17() -> xmlschema.XMLSchema:
    return load_schema(get_profile("ts33180-r17"))


@pytest.fixture(scope="module")
def legacy_vendor() -> xmlschema.XMLSchema:
    return load_schema(get_profile("rel13-legacy"), VENDOR_NS)


def test_enough_crafted_samples() -> None:
    valid = [p for p in CRAFTED if p.name.startswith("valid-")]
    invalid = [p for p in CRAFTED if p.name.startswith("invalid-")]
    assert len(CRAFTED) >= 25
    assert len(valid) + len(invalid) == len(CRAFTED), "crafted names start valid- or invalid-"
    assert valid and invalid


@pytest.mark.parametrize(
    "sample", PEER_SAMPLES + CRAFTED + REFKMS, ids=_ids(PEER_SAMPLES + CRAFTED + REFKMS)
)
def test_r16_answers_like_the_3gpp_schema(
    sample: Path, peer: xmlschema.XMLSchema, r16: xmlschema.XMLSchema
) -> None:
    theirs = peer.is_valid(str(sample))
    ours = r16.is_valid(str(sample))
    assert ours == theirs, f"{sample.name}: 3GPP schema says valid={theirs}, r16 says {ours}"
    expected = PEER_EXPECTED.get(sample.name)
    if sample.parent == SAMPLES:
        expected = sample.name.startswith("valid-")
    if expected is not None:
        assert ours == expected


@pytest.mark.parametrize("sample", PEER_SAMPLES + CRAFTED, ids=_ids(PEER_SAMPLES + CRAFTED))
def test_r17_keeps_every_r16_answer(
    sample: Path, r16: xmlschema.XMLSchema, r17: xmlschema.XMLSchema
) -> None:
    assert r17.is_valid(str(sample)) == r16.is_valid(str(sample))


@pytest.mark.parametrize("sample", R17_SAMPLES, ids=_ids(R17_SAMPLES))
def test_r17_additions(
    sample: Path,
    peer: xmlschema.XMLSchema,
    r16: xmlschema.XMLSchema,
    r17: xmlschema.XMLSchema,
) -> None:
    assert r17.is_valid(str(sample)) == sample.name.startswith("valid-")
    assert not r16.is_valid(str(sample))
    assert not peer.is_valid(str(sample))


def test_r17_key_id_errors_name_the_element(r17: xmlschema.XMLSchema) -> None:
    with pytest.raises(xmlschema.XMLSchemaValidationError) as caught:
        r17.validate(str(SAMPLES / "r17" / "invalid-trk-id-65-octets.xml"))
    assert caught.value.path == "/KmsResponse/TrK-ID"


@pytest.mark.parametrize("sample", LEGACY_SAMPLES, ids=_ids(LEGACY_SAMPLES))
def test_legacy_in_a_vendor_namespace(
    sample: Path, legacy_vendor: xmlschema.XMLSchema, r16: xmlschema.XMLSchema
) -> None:
    assert legacy_vendor.is_valid(str(sample)) == sample.name.startswith("valid-")
    assert not r16.is_valid(str(sample))


def test_legacy_namespace_is_what_the_profile_is_given() -> None:
    text = (SAMPLES / "legacy" / "valid-init-kmsuri-first.xml").read_text(encoding="utf-8")
    in_3gpp_ns = text.replace(VENDOR_NS, KMS_INTERFACE_NS).encode()
    assert load_schema(get_profile("rel13-legacy")).is_valid(in_3gpp_ns)
    assert not load_schema(get_profile("rel13-legacy"), "urn:example:other").is_valid(in_3gpp_ns)
    assert not load_schema(get_profile("ts33180-r16")).is_valid(in_3gpp_ns), "KmsUri-first"


def test_r16_declares_the_same_names_as_the_3gpp_schema(
    peer: xmlschema.XMLSchema, r16: xmlschema.XMLSchema
) -> None:
    assert sorted(r16.types) == sorted(peer.types)
    assert sorted(r16.elements) == sorted(peer.elements)


def test_imports_come_from_schemas_dir_not_xmlschema_fallbacks(peer: xmlschema.XMLSchema) -> None:
    for namespace in ("http://www.w3.org/2000/09/xmldsig#", "http://www.w3.org/2001/04/xmlenc#"):
        urls = [s.url for s in peer.maps.namespaces[namespace]]
        assert urls and all("/schemas/w3c/" in str(u) for u in urls), urls
        assert not any("site-packages" in str(u) for u in urls)


def test_a_remote_import_is_refused_not_fetched() -> None:
    # 192.0.2.1 is TEST-NET-1: a fetch attempt would hang until a timeout, a refusal is instant.
    xsd = (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t">'
        '<xs:import namespace="urn:remote" schemaLocation="http://192.0.2.1/remote.xsd"/>'
        "</xs:schema>"
    )
    with pytest.warns(xmlschema.XMLSchemaImportWarning, match="block access to remote"):
        compile_offline(xsd, base_url=REPO / "schemas")
