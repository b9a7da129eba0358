"""The case loader: schema-checked files, FILE:LINE messages, check globs, PICS, needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conformance.catalogue.cases import (
    CaseFileError,
    catalogue_dir,
    compile_pics,
    load_catalogue,
    missing_need,
    pics_applies,
    select,
)
from conformance.target.file import load_target

GOOD = """\
area: keyprov
title: KMS KeyProvision
cases:
  - id: KEYPROV-DEMO-001
    title: a demo case
    reqs: [REQ-097]
    clause: Annex F.2.1
    pics: "signing and encryption != 'none'"
    steps:
      - request: keyprov
        expect: {status: 200, message: KmsKeyProv}
        checks: [keyset.uid, "envelope.*"]
"""


def _catalogue(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / "cases"
    directory.mkdir(exist_ok=True)
    shutil.copy(catalogue_dir() / "case-schema.json", directory / "case-schema.json")
    (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_a_good_file_loads_and_globs_expand(tmp_path: Path) -> None:
    cases = load_catalogue(_catalogue(tmp_path, "keyprov.yaml", GOOD))
    assert [c.id for c in cases] == ["KEYPROV-DEMO-001"]
    checks = cases[0].steps[0].checks
    assert checks[0] == "keyset.uid"
    assert "envelope.schema" in checks and "envelope.root" in checks
    assert cases[0].steps[0].status_ok(200) and not cases[0].steps[0].status_ok(401)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (GOOD.replace("request: keyprov", "request: keyprovv"), 10, "request"),
        (GOOD.replace("[keyset.uid,", "[keyset.no-such-check,"), 12, "no check is named"),
        (GOOD.replace("id: KEYPROV-DEMO-001", "id: keyprov-demo-1"), 4, "id"),
        (GOOD.replace("    clause: Annex F.2.1\n", ""), 4, "clause"),
        (GOOD.replace("status: 200", "status: OK"), 11, "status"),
        (GOOD.replace("signing and", "__import__('os') and"), 8, "PICS"),
        (GOOD.replace("title: a demo case", "title: [unclosed"), 6, "YAML"),
        (GOOD.replace("area: keyprov", "area: init"), 1, "file stem"),
    ],
)
def test_a_broken_file_names_file_line_and_problem(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    directory = _catalogue(tmp_path, "keyprov.yaml", text)
    with pytest.raises(CaseFileError) as info:
        load_catalogue(directory)
    message = str(info.value)
    assert message.startswith(f"{directory / 'keyprov.yaml'}:{line}:"), message
    assert words.lower() in message.lower()
    assert "\n" not in message


def test_duplicate_ids_across_files_are_refused(tmp_path: Path) -> None:
    directory = _catalogue(tmp_path, "keyprov.yaml", GOOD)
    (directory / "init.yaml").write_text(GOOD.replace("area: keyprov", "area: init"))
    with pytest.raises(CaseFileError, match="already used"):
        load_catalogue(directory)


def test_pics_expressions() -> None:
    values = {"signing": True, "ink": False, "encryption": "none", "release": "ts33180-r17"}
    assert pics_applies("signing", values)
    assert not pics_applies("signing and ink", values)
    assert pics_applies("signing and not ink", values)
    assert not pics_applies("encryption != 'none'", values)
    assert pics_applies("encryption == 'none' or ink", values)
    assert pics_applies("release == 'ts33180-r17'", values)
    assert pics_applies("true", values)
    for bad in ("signing(", "open('x')", "signing + 1", "nosuchpics", "x.y"):
        with pytest.raises(CaseFileError):
            compile_pics(bad)


def test_missing_needs_name_the_input(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[target]\nbase_url = "https://kms.example/keymanagement/identity/v1"\n'
        '[[users]]\nuri = "sip:a@example.org"\ntoken = "t"\n'
    )
    target = load_target(path)
    assert missing_need("users.1", target) is None
    assert "2 [[users]]" in (missing_need("users.2", target) or "")
    assert "[tokens] expired" in (missing_need("tokens.expired", target) or "")
    assert "partner_kms_uris" in (missing_need("pixit.partner_kms_uris", target) or "")


def test_the_shipped_catalogue_loads_and_selects() -> None:
    cases = load_catalogue()
    assert len(cases) >= 120
    assert select(cases, ["KEYPROV-*"]) and all(
        c.area == "keyprov" for c in select(cases, ["keyprov"])
    )
    assert select(cases, [cases[0].id]) == [cases[0]]
