"""Hardened XML parsing for everything a target sends (DESIGN.md section 8).

Entities are never resolved, nothing is fetched, a document type declaration is refused
outright (it is the vehicle of entity bombs and external entities, and no KMS message
needs one), and the size is capped before lxml sees a byte.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class XmlRejected(ValueError):
    """The octets are not a document the harness will look at; the message is one line."""


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse one XML document and return its root element, or raise ``XmlRejected``."""
    if len(data) > max_bytes:
        raise XmlRejected(f"body of {len(data)} octets exceeds the cap of {max_bytes}")
    if not data.strip():
        raise XmlRejected("empty body where an XML document was expected")
    try:
        root = etree.fromstring(data, parser=hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"not well-formed XML: {_one_line(str(exc))}") from None
    except ValueError as exc:  # lxml raises this for some encoding declarations
        raise XmlRejected(f"not parseable XML: {_one_line(str(exc))}") from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XmlRejected("document type declaration present (DTDs and entities are refused)")
    return root


def serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, encoding="utf-8", xml_declaration=True)


def hardened_parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not thread-safe and carry error state.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
