"""The hardened XML parser for request bodies (DESIGN.md section 8, issue 3 item 5)."""

from __future__ import annotations

from lxml import etree

MAX_REQUEST_BYTES = 256 * 1024


class UnsafeXml(ValueError):
    """The body is not a well-formed, DTD-free XML document within the size cap."""


def parse_body(body: bytes) -> etree._Element:
    """Parse ``body``; any DOCTYPE is refused outright, so no entity is ever declared."""
    if len(body) > MAX_REQUEST_BYTES:
        raise UnsafeXml(f"the body exceeds {MAX_REQUEST_BYTES} octets")
    if b"<!doctype" in body.lower():
        raise UnsafeXml("a DOCTYPE is not accepted in a KMS request")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(body, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise UnsafeXml(f"the body is not well-formed XML: {' '.join(str(exc).split())}") from None
    if root is None:
        raise UnsafeXml("the body holds no XML element")
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise UnsafeXml("a DOCTYPE is not accepted in a KMS request")
    return root
