"""The ``[limits]`` table of a target file, and the structural limits on a built tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from conformance.core.limits import DEFAULT_LIMITS, Limits
from conformance.core.xmlsafe import StructureRejected, check_tree, parse_xml
from conformance.target.file import TargetFileError, load_target

BASE = """[target]
base_url = "https://127.0.0.1:1/keymanagement/identity/v1"

[[users]]
uri = "sip:alice@example.org"
token = "a-token-of-some-length"
"""


def _target(tmp_path: Path, limits: str) -> Path:
    path = tmp_path / "target.toml"
    path.write_text(BASE + "\n[limits]\n" + limits, encoding="utf-8")
    return path


def test_limits_default_and_given(tmp_path: Path) -> None:
    assert load_target(_target(tmp_path, "")).limits == DEFAULT_LIMITS
    given = load_target(_target(tmp_path, "max_depth = 10\ncase_cpu_s = 1\n")).limits
    assert given.max_depth == 10 and given.case_cpu_s == 1.0
    assert given.max_elements == DEFAULT_LIMITS.max_elements


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_depht = 3\n", r"limits\.max_depht: unknown key \(known: case_cpu_s, "),
        ("max_depth = 0\n", r"limits\.max_depth: must be a positive integer"),
        ("max_depth = 2.5\n", r"limits\.max_depth: must be a positive integer"),
        ('case_cpu_s = "soon"\n', r"limits\.case_cpu_s: must be a positive number of seconds"),
        ("max_evidence_bytes = true\n", r"limits\.max_evidence_bytes: must be a positive"),
    ],
)
def test_bad_limits_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TargetFileError, match=message):
        load_target(_target(tmp_path, text))


def test_bad_limit_is_exit_2_with_one_line(tmp_path: Path) -> None:
    target = str(_target(tmp_path, "max_depth = -1\n"))
    done = subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", "run", "--target", target, "--output", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "limits.max_depth: must be a positive integer" in lines[0]


def test_each_structural_limit_at_its_edge() -> None:
    """At the limit an answer is accepted; one more is refused, naming that limit."""
    ns = "urn:3gpp:ns:mcsecKMSInterface:1.0"
    small = Limits(
        max_elements=10,
        max_depth=4,
        max_attributes_per_element=3,
        max_namespace_declarations=3,
        max_namespace_declarations_per_element=2,
        max_text_chars=20,
    )
    at_limit = (
        f'<r xmlns="{ns}" a="1" b="2" c="3"><e xmlns:p="urn:p"><f><g>0123456789</g></f></e>'
        "<h>0123456789</h></r>"
    ).encode()
    parse_xml(at_limit, limits=small)
    over = {
        "max_attributes_per_element": f'<r xmlns="{ns}" a="1" b="2" c="3" d="4"/>',
        "max_depth": "<r><a><b><c><d/></c></b></a></r>",
        "max_elements": "<r>" + "<a/>" * 10 + "</r>",
        "max_namespace_declarations_per_element": (
            '<r xmlns:a="urn:a" xmlns:b="urn:b" xmlns:c="urn:c"/>'
        ),
        "max_namespace_declarations": (
            '<r xmlns:a="urn:a"><x xmlns:b="urn:b"/><y xmlns:c="urn:c" xmlns:d="urn:d"/></r>'
        ),
        "max_text_chars": "<r><a>0123456789</a>0123456789x</r>",
    }
    for limit, text in over.items():
        with pytest.raises(StructureRejected, match=rf"exceeds limits\.{limit} \("):
            parse_xml(text.encode(), limits=small)


def test_check_tree_applies_the_limits_to_a_built_tree() -> None:
    """A decrypted KmsMessage is parsed apart from its response: the same limits hold."""
    element = etree.Element("KmsKeyProv", {f"a{i}": "x" for i in range(300)})
    with pytest.raises(StructureRejected, match=r"max_attributes_per_element \(200\): 300 on"):
        check_tree(element)
    nested = etree.Element("r")
    node = nested
    for _ in range(70):
        node = etree.SubElement(node, "n")
    with pytest.raises(StructureRejected, match=r"max_depth \(64\): 65 at <n>"):
        check_tree(nested)
    check_tree(etree.fromstring(b"<r xmlns:a='urn:a'><a:x/><!-- c --></r>"))
