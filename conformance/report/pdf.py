"""report.pdf: the protocol conformance test report (PCTR) of a run, after ISO/IEC 9646-5.

``kms-conformance report OUTPUT_DIR --pdf [--lab LAB.toml]`` renders it from the files a
run wrote (results.json, the same redacted document report.html is rendered from, plus
campaign.json and waivers.toml when present) with WeasyPrint. Its sections follow the
PCTR proforma: identification of the report, the test laboratory, the KMS under test
(the implementation under test) and its PICS; the test campaign; the verdict summary;
per-requirement and per-case results; the waivers (known deviations); signatures.

The lab file (optional) is TOML::

    [lab]
    name = "Example Test Lab"         # name, address, accreditation, contact: all optional
    address = "1 Test Street, Testville"
    accreditation = "ISO/IEC 17025, cert 1234"
    contact = "lab@example.org"

    [report]
    id = "PCTR-2026-017"              # the report identifier
    client = "Example KMS vendor"

    [[signature]]
    role = "Test engineer"
    name = "A. Tester"
"""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import Any

from conformance.report.evidence import atomic_write
from conformance.report.html import _coverage, case_label, templates, verdict_banner
from conformance.report.results_json import ResultsFileError, read_results

TEMPLATE = "pctr.html.j2"
INSTALL_HINT = (
    "the PDF renderer is missing: pip install 'kms-conformance[pdf]' (WeasyPrint), "
    "with Debian's libpango-1.0-0 and libpangoft2-1.0-0"
)
LAB_SECTIONS = {
    "lab": ("name", "address", "accreditation", "contact"),
    "report": ("id", "client"),
}


class PdfError(Exception):
    """The PDF cannot be made; ``exit_code`` 2 (usage / missing renderer)."""


class RendererMissing(PdfError):
    pass


def load_lab(path: Path | None) -> dict[str, Any]:
    """The lab identification from a lab TOML file (empty when none is given)."""
    if path is None:
        return {"lab": {}, "report": {}, "signature": []}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PdfError(f"{path}: lab file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PdfError(f"{path}: not a readable TOML file: {exc}") from None
    unknown = sorted(set(data) - {*LAB_SECTIONS, "signature"})
    if unknown:
        expected = "[lab], [report], [[signature]]"
        raise PdfError(f"{path}: {unknown[0]}: unknown key (expected {expected})")
    lab: dict[str, Any] = {"signature": []}
    for section, keys in LAB_SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise PdfError(f"{path}: {section}: must be a table")
        for key, value in table.items():
            if key not in keys:
                raise PdfError(f"{path}: {section}.{key}: unknown key (known: {', '.join(keys)})")
            if not isinstance(value, str):
                raise PdfError(f"{path}: {section}.{key}: must be a string")
        lab[section] = dict(table)
    signatures = data.get("signature", [])
    if not isinstance(signatures, list):
        raise PdfError(f"{path}: signature: must be [[signature]] tables")
    for n, entry in enumerate(signatures, start=1):
        if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
            raise PdfError(f"{path}: signature[{n}]: must be a table of strings (role, name)")
        if set(entry) - {"role", "name"}:
            extra = sorted(set(entry) - {"role", "name"})[0]
            raise PdfError(f"{path}: signature[{n}].{extra}: unknown key (known: role, name)")
        lab["signature"].append(dict(entry))
    return lab


def read_run(out_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """results.json and campaign.json (None when the run was not made by ``run``)."""
    try:
        document = read_results(
            out_dir / "results.json", missing=f"is {out_dir} the output folder of a run?"
        )
    except ResultsFileError as exc:
        raise PdfError(str(exc)) from None
    campaign = None
    try:
        campaign = json.loads((out_dir / "campaign.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        campaign = None
    return document, campaign


def pctr_html(
    document: dict[str, Any], campaign: dict[str, Any] | None, lab: dict[str, Any]
) -> str:
    """The PCTR as print-ready HTML (what the PDF is rendered from)."""
    summary = document["summary"]
    state, banner = verdict_banner(summary)
    cases = [
        {**case, "label": case_label(case), "waiver": case.get("waiver")}
        for case in document["cases"]
    ]
    target = dict(document.get("target", {}))
    pics = target.pop("pics", {}) or {}
    failing = [c for c in cases if c["verdict"] in ("fail", "error", "inconc") or c.get("waiver")]
    return templates().get_template(TEMPLATE).render(
        doc=document,
        state=state,
        banner=banner,
        summary=summary,
        target=target,
        pics=pics,
        cases=cases,
        observations=failing,
        requirements=document.get("requirements", []),
        coverage=_coverage(document.get("requirements", [])),
        campaign=campaign or {},
        waivers=document.get("waivers"),
        lab=lab,
    )


def render_pdf(html: str) -> bytes:
    try:
        import weasyprint
    except (ImportError, OSError):  # OSError: WeasyPrint found no pango library
        raise RendererMissing(INSTALL_HINT) from None
    for name in ("weasyprint", "fontTools"):  # font subsetting chatter is not for users
        logging.getLogger(name).setLevel(logging.ERROR)
    return bytes(weasyprint.HTML(string=html).write_pdf())


def write_pdf(out_dir: Path, lab_file: Path | None = None) -> Path:
    """Render OUTPUT_DIR/report.pdf; raises PdfError (exit 2) with a one-line reason."""
    lab = load_lab(lab_file)
    document, campaign = read_run(out_dir)
    pdf = render_pdf(pctr_html(document, campaign, lab))
    path = out_dir / "report.pdf"
    atomic_write(path, pdf)
    return path


def main(out_dir: str, pdf: bool, lab: str | None) -> int:
    import sys

    if not pdf:
        print("kms-conformance report: say which report to make (--pdf)", file=sys.stderr)
        return 2
    try:
        path = write_pdf(Path(out_dir), Path(lab) if lab else None)
    except PdfError as exc:
        print(f"kms-conformance report: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
