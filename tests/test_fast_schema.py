"""libxml2's "valid" answer may stand in for xmlschema's only if they agree (envelope.schema).

The checks skip xmlschema when libxml2 finds a document valid, so a document libxml2
accepts and xmlschema rejects would hide a violation. Every saved sample, the fuzz corpus,
the peer samples and mutated reference-KMS responses go through both validators here.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path

import pytest
from lxml import etree

from conformance.core.xmlsafe import XmlRejected, parse_xml
from conformance.profiles import get_profile, load_fast_schema, load_schema

ROOT = Path(__file__).resolve().parent
SHARED = Path(os.environ["KMS_CONFORMANCE_SHARED"])
PROFILES = ("ts33180-r17", "ts33180-r16")


def _documents() -> Iterator[tuple[str, etree._Element]]:
    folders = [ROOT / "vectors" / "schema-samples", ROOT / "vectors" / "fuzz-corpus"]
    files = [p for folder in folders for p in sorted(folder.rglob("*.xml"))]
    files += sorted((SHARED / "peer-samples").rglob("*.xml"))
    for path in files:
        try:
            yield str(path.relative_to(path.parents[2])), parse_xml(path.read_bytes())
        except XmlRejected:
            continue


DOCUMENTS = list(_documents())


def _xmlschema_valid(profile: str, document: etree._Element) -> bool:
    schema = load_schema(get_profile(profile))
    return not any(True for _ in schema.iter_errors(etree.ElementTree(document)))


def _agree(profile: str, document: etree._Element) -> tuple[bool, bool]:
    fast = load_fast_schema(get_profile(profile))
    assert fast is not None, f"libxml2 could not compile the {profile} schema"
    lxml_valid = bool(fast.validate(document))
    try:
        slow_valid = _xmlschema_valid(profile, document)
    except Exception:  # xmlschema raises on an xsi:type naming no type: invalid
        slow_valid = False
    return lxml_valid, slow_valid


def test_there_are_samples_of_both_kinds() -> None:
    answers = {_agree("ts33180-r17", d)[1] for _, d in DOCUMENTS}
    assert len(DOCUMENTS) > 80 and answers == {True, False}


@pytest.mark.parametrize("profile", PROFILES)
def test_libxml2_never_accepts_what_xmlschema_rejects(profile: str) -> None:
    wrong = [name for name, d in DOCUMENTS if _agree(profile, d) == (True, False)]
    assert not wrong, f"libxml2 accepts, xmlschema rejects ({profile}): {wrong}"


def _mutations(document: etree._Element, rng: random.Random) -> Iterator[etree._Element]:
    elements = [e for e in document.iter() if isinstance(e.tag, str)]
    for _ in range(40):
        mutant = deepcopy(document)
        nodes = [e for e in mutant.iter() if isinstance(e.tag, str)]
        node = rng.choice(nodes[1:]) if len(nodes) > 1 else nodes[0]
        parent = node.getparent()
        move = rng.randrange(6)
        if move == 0 and parent is not None:
            parent.remove(node)
        elif move == 1 and parent is not None:
            parent.insert(parent.index(node), deepcopy(node))
        elif move == 2 and parent is not None and len(parent) > 1:
            i, j = rng.sample(range(len(parent)), 2)
            a, b = parent[i], parent[j]
            parent.replace(a, deepcopy(b))
            parent.replace(b, deepcopy(a))
        elif move == 3:
            node.text = rng.choice(["", "x", "-1", "1.0.0", "zz", "AB" * 40, " 7 "])
        elif move == 4 and node.attrib:
            name = rng.choice(list(node.attrib))
            node.set(name, rng.choice(["", "9.9.9", "x:Nope", "KeyContentType", "Root"]))
        else:
            node.tag = etree.QName(
                etree.QName(node).namespace,
                rng.choice([etree.QName(e).localname for e in elements]),
            ).text
        yield mutant


@pytest.mark.parametrize("profile", PROFILES)
def test_libxml2_agrees_on_mutated_valid_documents(profile: str) -> None:
    rng = random.Random(20261129)
    valid = [(n, d) for n, d in DOCUMENTS if _agree(profile, d) == (True, True)]
    assert valid
    wrong = []
    checked = 0
    for name, document in valid:
        for mutant in _mutations(document, rng):
            lxml_valid, slow_valid = _agree(profile, mutant)
            checked += 1
            if lxml_valid and not slow_valid:
                wrong.append(name)
    assert checked > 500
    assert not wrong, f"libxml2 accepts mutants xmlschema rejects ({profile}): {sorted(set(wrong))}"
