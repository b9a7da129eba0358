"""Hardened XML parsing for everything a target sends (DESIGN.md section 8).

Entities are never resolved, nothing is fetched, a document type declaration is refused
outright (it is the vehicle of entity bombs and external entities, and no KMS message
needs one), and the size is capped before lxml sees a byte. While parsing, the structure
is measured against the target's ``[limits]`` (element count, depth, attributes and
namespace declarations per element, total text: ``conformance.core.limits``), and parsing stops
at the first limit passed, so no validator ever walks a pathological tree.
"""

from __future__ import annotations

import io
from typing import Any

from lxml import etree

from conformance.core.limits import DEFAULT_LIMITS, LimitExceeded, Limits, StructureCounter

DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class XmlRejected(ValueError):
    """The octets are not a document the harness will look at; the message is one line."""


class StructureRejected(XmlRejected):
    """The document passed one of the structural ``[limits]``: the target's fault."""

    def __init__(self, exceeded: LimitExceeded) -> None:
        self.exceeded = exceeded
        super().__init__(str(exceeded))


_EVENTS = ("start", "end", "start-ns", "comment", "pi")


def parse_xml(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, limits: Limits = DEFAULT_LIMITS
) -> etree._Element:
    """Parse one XML document and return its root element, or raise ``XmlRejected``
    (``StructureRejected`` when a structural limit is passed)."""
    if len(data) > max_bytes:
        raise XmlRejected(f"body of {len(data)} octets exceeds the cap of {max_bytes}")
    if not data.strip():
        raise XmlRejected("empty body where an XML document was expected")
    counter = StructureCounter(limits)
    try:
        # iterparse with the hardened parser's options: the same libxml2 parse, with one
        # event per node so that the counter can stop it at the first limit passed.
        events = etree.iterparse(io.BytesIO(data), events=_EVENTS, **_HARDENED)
        for kind, node in events:
            counter.event(kind, node)
        root: etree._Element | None = events.root
    except LimitExceeded as exc:
        raise StructureRejected(exc) from None
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"not well-formed XML: {_one_line(str(exc))}") from None
    except ValueError as exc:  # lxml raises this for some encoding declarations
        raise XmlRejected(f"not parseable XML: {_one_line(str(exc))}") from None
    if root is None:
        raise XmlRejected("not well-formed XML: no root element")
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XmlRejected("document type declaration present (DTDs and entities are refused)")
    return root


def check_tree(root: etree._Element, limits: Limits = DEFAULT_LIMITS) -> None:
    """The structural limits on a tree built elsewhere (a decrypted fragment): one pass in
    document order, namespace declarations counted where they are new to the element."""
    counter = StructureCounter(limits)
    try:
        _walk(root, counter, {})
    except LimitExceeded as exc:
        raise StructureRejected(exc) from None


def _walk(element: etree._Element, counter: StructureCounter, scope: dict[Any, Any]) -> None:
    # Recursion is bounded: the counter stops at limits.max_depth before Python's limit.
    nsmap = element.nsmap if isinstance(element.tag, str) else scope
    for prefix, uri in nsmap.items():
        if scope.get(prefix) != uri:
            counter.event("start-ns", (prefix, uri))
    counter.event("start" if isinstance(element.tag, str) else "comment", element)
    for child in element:
        _walk(child, counter, nsmap)
    if isinstance(element.tag, str):
        counter.event("end", element)


# No entities, no network, no DTD, libxml2's size limits kept; comments and processing
# instructions kept so that the structural limits count them.
_HARDENED: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": False,
    "remove_pis": False,
}


def serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, encoding="utf-8", xml_declaration=True)


def is_inside(node: etree._Element, ancestor: etree._Element) -> bool:
    """Whether ``node`` is ``ancestor`` or lies below it."""
    current: etree._Element | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = current.getparent()
    return False


def hardened_parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not thread-safe and carry error state.
    return etree.XMLParser(**_HARDENED)


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
