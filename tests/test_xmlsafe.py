"""The hardened parser refuses what could hurt the harness, with a one-line reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.core.xmlsafe import XmlRejected, parse_xml


def test_external_entity_is_refused_and_never_read(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-SECRET")
    before = canary.stat().st_atime_ns
    doc = f'<!DOCTYPE a [<!ENTITY x SYSTEM "file://{canary}">]><a>&x;</a>'.encode()
    with pytest.raises(XmlRejected, match="document type declaration"):
        parse_xml(doc)
    assert canary.stat().st_atime_ns == before


def test_entity_expansion_bomb_is_refused() -> None:
    defs = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    with pytest.raises(XmlRejected):
        parse_xml(f"<!DOCTYPE r [{defs}]><r>&a9;</r>".encode())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty body"),
        (b"<a>\xc3\x28</a>", "not well-formed"),
        (b"<a><b></a>", "not well-formed"),
        (b"not xml at all", "not well-formed"),
    ],
)
def test_malformed_bodies_get_one_line_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(data)
    assert reason in str(info.value) and "\n" not in str(info.value)


def test_size_cap_applies_before_parsing() -> None:
    with pytest.raises(XmlRejected, match="exceeds the cap"):
        parse_xml(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)


def test_namespaces_and_prefixes_parse() -> None:
    root = parse_xml(
        b'<k:KmsResponse xmlns:k="urn:3gpp:ns:mcsecKMSInterface:1.0"><k:UserUri/></k:KmsResponse>'
    )
    assert root.tag == "{urn:3gpp:ns:mcsecKMSInterface:1.0}KmsResponse"
