"""Harmless differences never fail a case: hex case, time-zone form, namespace prefixes.

Real unsigned responses of the reference KMS are rewritten the way another, conforming
KMS might write them, and the offline check path (the same checks a run uses) must still
find them conformant. Prefixes, whitespace and extension elements are also fuzzed in
tests/test_fuzz_checks.py; hex case and time-zone forms are not, so they are here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree
from probe_support.kms import ServedKms, serving_kms

from conformance.probe.sender import Probe
from conformance.profiles import get_profile
from conformance.run.offline import check_file

HEX_ELEMENTS = ("UserDecryptKey", "UserSigningKeySSK", "UserPubTokenPVT", "PubEncKey", "PubAuthKey")
TIME_ELEMENTS = ("Time", "ValidFrom", "ValidTo")


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServedKms, dict[str, bytes]]]:
    folder = tmp_path_factory.mktemp("kms")
    with serving_kms(folder, {"protection": {"signing": False}}) as kms:
        bodies = {}
        with Probe(kms.target, get_profile(kms.target.profile.release)) as probe:
            for kind in ("init", "keyprov", "certcache"):
                exchange = probe.send({"request": kind}, kind)
                assert exchange.status == 200, exchange.error
                bodies[kind] = exchange.body
        yield kms, bodies


def _upper_hex(root: etree._Element) -> etree._Element:
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname in HEX_ELEMENTS:
            element.text = (element.text or "").upper()
    return root


def _offset_times(root: etree._Element) -> etree._Element:
    plus_two = timezone(timedelta(hours=2))
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname in TIME_ELEMENTS:
            text = (element.text or "").strip()
            instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if instant.tzinfo is None:
                continue
            element.text = instant.astimezone(plus_two).isoformat()
    return root


def _prefixed(root: etree._Element) -> etree._Element:
    text = etree.tostring(root).decode()
    text = re.sub(
        r'xmlns="urn:3gpp:ns:mcsecKMSInterface:1.0"',
        'xmlns:k="urn:3gpp:ns:mcsecKMSInterface:1.0"',
        text,
    )
    text = re.sub(r"<(/?)(?![\w.-]+:)([\w.-]+)", r"<\1k:\2", text)
    text = re.sub(r'xsi:type="(?![\w.-]+:)([\w.-]+)"', r'xsi:type="k:\1"', text)
    return etree.fromstring(text.encode())


REWRITES: dict[str, Callable[[etree._Element], etree._Element]] = {
    "upper-case hex": _upper_hex,
    "+02:00 time-zone form": _offset_times,
    "prefixed KMS namespace": _prefixed,
    "all three": lambda r: _prefixed(_offset_times(_upper_hex(r))),
}


@pytest.mark.parametrize("rewrite", list(REWRITES))
@pytest.mark.parametrize("kind", ["init", "keyprov", "certcache"])
def test_a_harmless_rewrite_stays_conformant(
    served: tuple[ServedKms, dict[str, bytes]], kind: str, rewrite: str, tmp_path: Path
) -> None:
    kms, bodies = served
    init = tmp_path / "init.xml"
    init.write_bytes(bodies["init"])
    original = tmp_path / "original.xml"
    original.write_bytes(bodies[kind])
    before = check_file(original, init_file=init, target_file=kms.target_file)
    assert before.conformant, [r.message for r in before.results if r.failed]
    changed = REWRITES[rewrite](etree.fromstring(bodies[kind]))
    rewritten = tmp_path / "rewritten.xml"
    rewritten.write_bytes(etree.tostring(changed))
    assert rewritten.read_bytes() != original.read_bytes()
    after = check_file(rewritten, init_file=init, target_file=kms.target_file)
    assert after.conformant, [f"{r.name}: {r.message}" for r in after.results if r.failed]
    warned = {r.name for r in after.results if r.outcome == "warning"}
    assert warned <= {r.name for r in before.results if r.outcome == "warning"}, warned
