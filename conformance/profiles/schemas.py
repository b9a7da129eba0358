"""Offline XSD loading: the W3C and KRR schemas written in ``schemas/``, never the network.

The 3GPP schema (TS 33.180 D.3.5.1) imports xmldsig, xenc and the KRR namespace without a
``schemaLocation``; xmlschema would then use its bundled fallbacks or, for the KRR
namespace, find nothing. ``reference_3gpp_schema`` points all three at the files written
here, so a peer schema and ours are judged against the same imported vocabularies.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lxml import etree

from conformance.core.datafiles import data_dir

if TYPE_CHECKING:  # imported when a schema is compiled: it costs ~0.1 s at start-up
    import xmlschema

SCHEMA_DIR: Final = data_dir("schemas")

XMLDSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
XENC_NS: Final = "http://www.w3.org/2001/04/xmlenc#"
KRR_NS: Final = "urn:3gpp:ns:mcsecKMSKRR:1.0"
# Stands in for the target namespace in XSDs whose namespace a profile chooses.
NAMESPACE_PLACEHOLDER: Final = "urn:kms-conformance:profile-namespace"


def import_locations() -> dict[str, str]:
    """The namespace -> file map for every namespace a KMS interface schema imports."""
    return {
        XMLDSIG_NS: str(SCHEMA_DIR / "w3c" / "xmldsig-core-schema.xsd"),
        XENC_NS: str(SCHEMA_DIR / "w3c" / "xenc-schema.xsd"),
        KRR_NS: str(SCHEMA_DIR / "krr" / "kms-krr.xsd"),
    }


def reference_3gpp_schema(path: str | Path) -> xmlschema.XMLSchema:
    """Load a 3GPP-style KMS interface XSD whose imports carry no ``schemaLocation``."""
    return compile_offline(Path(path).resolve())


def compile_offline(source: Path | str, base_url: Path | None = None) -> xmlschema.XMLSchema:
    """Compile an XSD file (``Path``) or XSD text (``str``, imports resolved against
    ``base_url``) with every import read from local files, never fetched.

    ``allow="local"`` rather than ``"sandbox"``: the sandbox only admits files under the
    schema's own folder, and a peer schema lives outside ``schemas/``. ``defuse="always"``
    refuses DTD entities in the XSD text, and ``use_fallback=False`` stops xmlschema from
    substituting its own bundled xmldsig/xenc copies for ours.
    """
    import xmlschema

    return xmlschema.XMLSchema(
        str(source) if isinstance(source, Path) else source,
        base_url=None if base_url is None else str(base_url),
        locations=import_locations(),
        use_fallback=False,
        allow="local",
        defuse="always",
    )


@lru_cache(maxsize=32)
def compile_profile_schema(schema_file: str, namespace: str | None = None) -> xmlschema.XMLSchema:
    """Compile ``SCHEMA_DIR/schema_file`` once per process, per target namespace.

    A schema whose text holds ``NAMESPACE_PLACEHOLDER`` (rel13-legacy) gets ``namespace``
    written in its place before compiling, because Rel-13 KMSs each used their own
    namespace (spec/sources.md section 3, row 1) and XSD has no namespace parameter.
    """
    path = SCHEMA_DIR / schema_file
    if namespace is None:
        return compile_offline(path)
    text = path.read_text(encoding="utf-8").replace(NAMESPACE_PLACEHOLDER, namespace)
    return compile_offline(text, base_url=path.parent)


@lru_cache(maxsize=32)
def compile_profile_fast(schema_file: str, namespace: str | None = None) -> etree.XMLSchema | None:
    """The same XSD compiled by libxml2 (lxml), for a fast first answer; None if it fails.

    Only a "valid" answer of libxml2 is used (checks then skip xmlschema); any other answer
    goes to xmlschema, which gives the messages. tests/test_fast_schema.py holds the two to
    agreement on every sample, on the fuzz corpus and on mutated responses. The XSDs import
    each other through relative schemaLocations inside ``schemas/``; the parser reads no
    network and resolves no entities.
    """
    path = SCHEMA_DIR / schema_file
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        text = path.read_text(encoding="utf-8")
        if namespace is not None:
            text = text.replace(NAMESPACE_PLACEHOLDER, namespace)
        document = etree.fromstring(text.encode("utf-8"), parser, base_url=str(path))
        return etree.XMLSchema(document)
    except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError):
        return None
