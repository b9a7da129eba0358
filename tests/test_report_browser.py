"""report.html in a real browser: Debian's headless chromium renders the banner, the counts
and the traceability matrix, and takes a screenshot kept as a CI artifact in reports/.

Without chromium the test fails under CI (``CI`` or ``KMS_CONFORMANCE_REQUIRE_BROWSER=1``
set: ``.ci/run`` installs chromium and sets the latter) and is skipped elsewhere, with the
reason.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import lxml.html
import pytest
from test_reports import sample_run

from conformance.report import write_reports

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "reports" / "report-screenshot.png"
TIMEOUT_S = 60
BROWSERS = ("chromium", "chromium-browser")


def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    reason = "chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI") or os.environ.get("KMS_CONFORMANCE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; CI must run the browser test")
    pytest.skip(reason)


def run_chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={cwd / 'profile'}",
        *args,
    ]
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(command)}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser")
    return write_reports(sample_run(), out / "latest")["html"]


def test_report_renders_banner_counts_and_matrix(report: Path) -> None:
    proc = run_chromium("--dump-dom", report.as_uri(), cwd=report.parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = lxml.html.document_fromstring(proc.stdout)
    [banner] = dom.xpath('//*[@id="banner"]')
    assert banner.text_content().strip() == "Not conformant"
    counts = {
        item.xpath("string(.//span)").strip(): item.xpath("string(.//b)").strip()
        for item in dom.xpath('//*[@id="counts"]/li')
    }
    assert counts["pass"] == "2" and counts["fail"] == "2" and counts["inconc"] == "1"
    assert counts["error"] == "1" and counts["n/a"] == "1" and counts["warnings"] == "2"
    rows = dom.xpath('//*[@id="matrix"]//tr[@class="req"]')
    assert len(rows) == 10
    verdicts = {row.get("id"): row.xpath("string(./td[5])").split()[0] for row in rows}
    assert verdicts["REQ-098"] == "fail" and verdicts["REQ-001"] == "not"
    assert not dom.xpath("//img"), "hostile markup from a response became an element"


def test_report_screenshot(report: Path) -> None:
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    proc = run_chromium(
        f"--screenshot={SCREENSHOT}",
        "--window-size=1280,2000",
        "--hide-scrollbars",
        report.as_uri(),
        cwd=report.parent.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = SCREENSHOT.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert re.search(rb"IDAT", data)


def test_report_prints_to_pdf_with_every_case_expanded(report: Path) -> None:
    work = report.parent.parent
    page = report.read_text()
    opened = work / "all-open.html"
    opened.write_text(
        re.sub(
            r'<details class="case"([^>]*?)(?: open)?>', r"<details class=\"case\"\1 open>", page
        )
    )
    pages = {}
    for name, source in (("report", report), ("all-open", opened)):
        pdf = work / f"{name}.pdf"
        proc = run_chromium(
            f"--print-to-pdf={pdf}", "--no-pdf-header-footer", source.as_uri(), cwd=work
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF-")
        pages[name] = len(re.findall(rb"/Type\s*/Page\b", data))
    # Closed (passing) cases print their details as if opened.
    assert pages["report"] == pages["all-open"] >= 3
