"""The certification workflow on real runs of the embedded KMS: waivers, diff, the PDF report
(PCTR) and the report.html filter (issue 14).

Three runs of the same four cases, through the CLI as a user runs it:
- ``good``: the compliant reference KMS, no waiver;
- ``waived``: fault cert-unknown-answered-200 (CERT-UNKNOWN-001 fails) with a waiver in
  force for it;
- ``stale``: the same fault, the waiver for CERT-UNKNOWN-001 expired and a waiver for
  INIT-CERT-001, which passes (an unexpected pass).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import lxml.html
import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conformance.run.cli"]
CASES = ("INIT-CERT-001", "CERT-OWN-001", "CERT-UNKNOWN-001", "KEYPROV-UID-001")
FAULT = "cert-unknown-answered-200"
WAIVED = """
[[waiver]]
case = "CERT-UNKNOWN-*"
reason = "answers 200 for an unknown KMS; fixed in release 4.2"
tracking = "KMS-77"
expires = 2099-12-31
"""
STALE = """
[[waiver]]
case = "CERT-UNKNOWN-001"
reason = "was to be fixed last year"
expires = 2020-01-01

[[waiver]]
case = "INIT-CERT-001"
reason = "certificate field order differs"
expires = 2099-12-31

[[waiver]]
case = "KEYPROV-*"
reason = "only for the legacy profile"
expires = 2099-12-31
profile = "rel13-legacy"
"""


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=240, cwd=cwd or ROOT, env=env
    )


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    base = tmp_path_factory.mktemp("certification")
    made = {}
    for name, fault, waivers in (
        ("good", None, None),
        ("waived", FAULT, WAIVED),
        ("stale", FAULT, STALE),
    ):
        out = base / name
        args = ["run", "--output", str(out), "--cases", *CASES]
        if fault:
            args += ["--embedded-fault", fault]
        if waivers:
            (base / f"{name}.toml").write_text(waivers)
            args += ["--waivers", str(base / f"{name}.toml")]
        made[name] = (out, cli(*args))
    return made


# -- waivers -----------------------------------------------------------------------------


def test_a_waived_failure_is_reported_as_fail_waived_and_does_not_fail_the_run(runs) -> None:
    out, done = runs["waived"]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "WAIVED CERT-UNKNOWN-001" in done.stdout and "1 waived" in done.stdout
    document = results(out)
    jsonschema.validate(
        document, json.loads((ROOT / "conformance/report/results.schema.json").read_text())
    )
    case = next(c for c in document["cases"] if c["id"] == "CERT-UNKNOWN-001")
    assert case["verdict"] == "fail" and case["waived"] is True  # verdict stays for old scripts
    assert case["waiver"]["status"] == "applied" and case["waiver"]["tracking"] == "KMS-77"
    assert document["summary"]["waived"] == 1 and document["summary"]["fail"] == 1
    assert document["waivers"][0]["cases"] == ["CERT-UNKNOWN-001"]
    # junit.xml: a known deviation is skipped (CI gates stay green) and says why.
    junit = etree.parse(str(out / "junit.xml"))
    [testcase] = junit.xpath(
        '//testcase[properties/property[@name="case_id"][@value="CERT-UNKNOWN-001"]]'
    )
    assert testcase.xpath('skipped[@type="waived"]/@message')[0].startswith("fail (waived)")
    assert "answers 200" in testcase.xpath('string(properties/property[@name="waiver"]/@value)')
    assert not junit.xpath("//failure")
    page = lxml.html.parse(str(out / "report.html"))
    assert page.xpath('string(//*[@id="banner"])').strip() == "Conformant with 1 waived deviation"
    assert "applied" in page.xpath('string(//table[@id="waiver-table"])')
    assert (out / "waivers.toml").read_text() == WAIVED


def test_an_unexpected_pass_and_an_expired_waiver_fail_the_run(runs) -> None:
    out, done = runs["stale"]
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "UNEXPECTED PASS INIT-CERT-001" in done.stdout
    assert (
        "waiver 'CERT-UNKNOWN-001' (was to be fixed last year) expired on 2020-01-01" in done.stderr
    )
    document = results(out)
    schema = json.loads((ROOT / "conformance/report/results.schema.json").read_text())
    jsonschema.validate(document, schema)
    by_id = {c["id"]: c for c in document["cases"]}
    assert by_id["INIT-CERT-001"]["verdict"] == "pass"
    assert by_id["INIT-CERT-001"]["waiver"]["status"] == "unexpected pass"
    assert by_id["CERT-UNKNOWN-001"]["waived"] is False
    assert by_id["CERT-UNKNOWN-001"]["waiver"]["status"] == "expired"
    assert "waiver" not in by_id["KEYPROV-UID-001"]  # its condition (profile) does not hold
    statuses = [w["status"] for w in document["waivers"]]
    assert statuses == ["expired", "unexpected pass", "condition false"]
    assert document["summary"]["unexpected_pass"] == 1 and document["summary"]["waived"] == 0
    junit = etree.parse(str(out / "junit.xml"))
    assert junit.xpath('//failure[@type="unexpected-pass"]') and junit.xpath(
        '//failure[@type="fail"]'
    )
    page = lxml.html.parse(str(out / "report.html"))
    assert page.xpath('string(//*[@id="banner"])').strip() == "Not conformant"
    attention = page.xpath('string(//*[@id="attention"]/following-sibling::table[1])')
    assert "pass (unexpected: waived)" in attention and "CERT-UNKNOWN-001" in attention


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[waiver]]\ncase = "X"\nexpires = 2027-01-01\n', "waiver[1].reason: required"),
        ('[[waiver]]\ncase = "X"\nreason = "r"\n', "waiver[1].expires: required"),
        ('[[waiver]]\ncase = "X"\nreason = "r"\nexpires = "2027-01-01"\n', "waiver[1].expires"),
        (
            '[[waiver]]\ncase = "X"\nreason = "r"\nexpires = 2027-01-01\nowner = "me"\n',
            "waiver[1].owner: unknown key",
        ),
        (
            '[[waiver]]\ncase = "X"\nreason = "r"\nexpires = 2027-01-01\npics = "cert and bogus"\n',
            "waiver[1].pics",
        ),
        ("[[waiver]\n", "not valid TOML"),
    ],
)
def test_a_bad_waiver_file_is_exit_2_with_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    waivers = tmp_path / "w.toml"
    waivers.write_text(text)
    done = cli(
        "run",
        "--output",
        str(tmp_path / "out"),
        "--cases",
        "INIT-CERT-001",
        "--waivers",
        str(waivers),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(waivers) in lines[0] and message in lines[0], lines
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "results.json").exists()  # refused before the run


# -- diff -------------------------------------------------------------------------------


def test_diff_finds_the_new_failure_and_gates_on_regressions(runs) -> None:
    good, waived, stale = (runs[k][0] for k in ("good", "waived", "stale"))
    done = cli(
        "diff",
        str(good),
        str(stale / "results.json"),
        "--format",
        "json",
        "--fail-on",
        "regressions",
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    # The unexpected pass fails the run too, so it is a regression for a CI gate.
    assert sorted(report["regressions"]) == ["CERT-UNKNOWN-001", "INIT-CERT-001"]
    verdicts = {c["id"]: (c["old"], c["new"]) for c in report["newly_failing"]}
    assert verdicts == {
        "CERT-UNKNOWN-001": ("pass", "fail"),
        "INIT-CERT-001": ("pass", "pass (unexpected)"),
    }
    changed = [m for m in report["changed_messages"] if m["case"] == "CERT-UNKNOWN-001"]
    assert any(m["check"] == "expect.status" and "200" in m["new"] for m in changed)
    assert "2 regression(s): CERT-UNKNOWN-001, INIT-CERT-001" in done.stderr
    # Back again: newly passing, no regression.
    back = cli("diff", str(stale), str(good), "--fail-on", "regressions")
    assert back.returncode == 0, back.stdout
    assert "Newly passing: 2\n" in back.stdout
    assert "  INIT-CERT-001: pass (unexpected) -> pass\n" in back.stdout
    assert "  CERT-UNKNOWN-001: fail -> pass\n" in back.stdout
    # A waived failure is a changed verdict, not a regression; Markdown for a PR comment.
    md = cli("diff", str(good), str(waived), "--format", "markdown", "--fail-on", "regressions")
    assert md.returncode == 0, md.stderr
    assert "no regression" in md.stdout
    assert "| Changed verdicts | `CERT-UNKNOWN-001` | pass | fail (waived) |" in md.stdout


def test_diff_lists_cases_added_and_removed(runs, tmp_path: Path) -> None:
    good = runs["good"][0]
    other = tmp_path / "other.json"
    document = results(good)
    dropped = document["cases"].pop()
    document["cases"].append({**dropped, "id": "NEW-CASE-001", "verdict": "fail", "reason": "x"})
    other.write_text(json.dumps(document))
    done = cli("diff", str(good), str(other), "--fail-on", "regressions")
    assert done.returncode == 1
    assert "Cases added: 1\n  NEW-CASE-001: - -> fail (x)" in done.stdout
    assert f"Cases removed: 1\n  {dropped['id']}: pass -> -" in done.stdout


def test_diff_of_something_that_is_no_results_file_is_exit_2(tmp_path: Path, runs) -> None:
    (tmp_path / "x.json").write_text('{"schema": "other"}')
    for bad in (tmp_path / "x.json", tmp_path / "missing"):
        done = cli("diff", str(runs["good"][0]), str(bad))
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert str(bad) in done.stderr and "Traceback" not in done.stderr


# -- PDF ---------------------------------------------------------------------------------


def pdftotext(pdf: Path) -> str:
    tool = shutil.which("pdftotext")
    if tool is None:
        reason = "pdftotext is not installed (apt-get install poppler-utils)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return subprocess.run(
        [tool, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_the_pdf_report_holds_the_summary_every_case_and_the_waivers(runs, tmp_path: Path) -> None:
    out = runs["waived"][0]
    lab = tmp_path / "lab.toml"
    lab.write_text(
        '[lab]\nname = "Example Test Lab"\naccreditation = "ISO/IEC 17025 no. 1234"\n'
        '[report]\nid = "PCTR-2026-017"\n'
        '[[signature]]\nrole = "Test engineer"\nname = "A. Tester"\n'
    )
    done = cli("report", str(out), "--pdf", "--lab", str(lab))
    assert done.returncode == 0, done.stderr
    pdf = out / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = pdftotext(pdf)
    for heading in (
        "Identification summary",
        "Test laboratory",
        "KMS under test",
        "PICS",
        "Test campaign",
        "Verdict summary",
        "Per-requirement results",
        "Per-case results",
        "Waivers",
        "Signatures",
    ):
        assert heading in text, heading
    assert "Example Test Lab" in text and "PCTR-2026-017" in text and "A. Tester" in text
    assert "Conformant with 1 waived deviation" in text
    document = results(out)
    for case in document["cases"]:
        assert case["id"] in text, case["id"]
    assert "fail (waived)" in text and "KMS-77" in text
    summary_row = " ".join(str(document["summary"][k]) for k in document["summary"])
    assert " ".join(text.split()).count(summary_row) >= 1, summary_row


def test_report_pdf_errors_are_one_line_exit_2(tmp_path: Path, runs) -> None:
    done = cli("report", str(tmp_path), "--pdf")
    assert done.returncode == 2 and "results.json: not found" in done.stderr
    bad_lab = tmp_path / "lab.toml"
    bad_lab.write_text('[lab]\nname = "x"\nphone = "1"\n')
    done = cli("report", str(runs["good"][0]), "--pdf", "--lab", str(bad_lab))
    assert done.returncode == 2 and "lab.phone: unknown key" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_report_pdf_without_the_renderer_says_what_to_install(tmp_path: Path, runs) -> None:
    # A Python that cannot import WeasyPrint: a sitecustomize that blocks it.
    block = tmp_path / "block"
    block.mkdir()
    (block / "weasyprint.py").write_text("raise ImportError('blocked for the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{ROOT}"}
    out = tmp_path / "copy"
    shutil.copytree(runs["good"][0], out)
    done = subprocess.run(
        [*CLI, "report", str(out), "--pdf"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "kms-conformance report: the PDF renderer is missing: pip install "
        "'kms-conformance[pdf]' (WeasyPrint), with Debian's libpango-1.0-0 and libpangoft2-1.0-0"
    )
    assert not (out / "report.pdf").exists()


# -- report.html filter --------------------------------------------------------------------


def test_report_html_has_the_filter_inline_and_no_network_reference(runs) -> None:
    page = (runs["stale"][0] / "report.html").read_text()
    dom = lxml.html.document_fromstring(page)
    assert dom.xpath('//form[@id="filter"]//select[@id="f-verdict"]/option[@value="waived"]')
    areas = dom.xpath('//select[@id="f-area"]/option/@value')
    assert "certcache" in " ".join(areas) or len(areas) > 2
    rows = dom.xpath('//tr[@class="case-row"]')
    assert {r.get("data-case") for r in rows} == set(CASES)
    assert not dom.xpath("//script[@src] | //link[@href] | //img[@src]")
    assert "http://" not in page.replace("http://www.w3.org", "")


def test_the_filter_works_in_a_browser(runs) -> None:
    """Headless chromium runs the inline script; the filter state comes from the URL fragment."""
    from test_report_browser import run_chromium

    report = runs["stale"][0] / "report.html"

    def visible(fragment: str) -> tuple[set[str], set[str], str]:
        proc = run_chromium("--dump-dom", report.as_uri() + fragment, cwd=report.parent)
        assert proc.returncode == 0, proc.stderr[-2000:]
        dom = lxml.html.document_fromstring(proc.stdout)
        rows = {r.get("data-case") for r in dom.xpath('//tr[@class="case-row"][not(@hidden)]')}
        details = {d.get("data-case") for d in dom.xpath('//details[@class="case"][not(@hidden)]')}
        return rows, details, dom.xpath('string(//*[@id="f-count"])')

    rows, details, count = visible("")
    assert rows == details == set(CASES) and count == f"{len(CASES)} of {len(CASES)} cases shown"
    rows, details, count = visible("#filter?verdict=fail")
    assert rows == details == {"CERT-UNKNOWN-001"} and count == f"1 of {len(CASES)} cases shown"
    rows, _, _ = visible("#filter?verdict=unexpected")
    assert rows == {"INIT-CERT-001"}
    rows, _, _ = visible("#filter?area=keyprov")
    assert rows == {"KEYPROV-UID-001"}
    rows, _, _ = visible("#filter?req=REQ-117")
    assert rows == {"CERT-UNKNOWN-001"}
    rows, _, _ = visible("#filter?q=unknown%20kms")
    assert "CERT-UNKNOWN-001" in rows and "KEYPROV-UID-001" not in rows
    rows, _, count = visible("#filter?verdict=pass&area=keyprov")
    assert rows == {"KEYPROV-UID-001"} and count.startswith("1 of")
