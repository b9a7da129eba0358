"""Reporters: results.json, junit.xml, report.html, evidence/ and the redaction of secrets.

A realistic run (several areas, every verdict, warnings, tokens and keys in many forms,
private key elements, a hostile response) is written with ``write_reports``; the tests read
the files as a user or a CI system would.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import lxml.html
import pytest
from lxml import etree

from conformance.core.exchange import Exchange, RecordedRequest, TlsFacts
from conformance.report import Redactor, write_reports
from conformance.report.evidence import case_dirs, safe_name
from conformance.report.html import verdict_banner
from conformance.verdicts.outcomes import CheckResult, Outcome, Strength, Verdict
from conformance.verdicts.results import (
    CaseResult,
    RequirementInfo,
    RunResult,
    SecretValue,
    StepRecord,
)

REPO = Path(__file__).resolve().parents[1]
BASE = "https://127.0.0.1:8443/keymanagement/identity/v1"
NS = "urn:3gpp:ns:mcsecKMSInterface:1.0"

TOKEN = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzaXA6YWxpY2VAZXhhbXBsZS5vcmcifQ.c2lnbmF0dXJlLXZhbHVl"
EXPIRED_TOKEN = b"eyJhbGciOiJFUzI1NiJ9.ZXhwaXJlZC10b2tlbi1ib2R5.ZXhwaXJlZC1zaWc"
TRK = bytes.fromhex("5f3a9c0e1b2d4f6a8c7e9b0d2f4a6c8e")
INK = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00")
# Private key material the KMS generated: the harness does not list it as a secret.
RSK = bytes.fromhex("04" + "9d1e7a3c" * 64)
SSK = bytes.fromhex("4b2940c176fb1fee8f1879e55ceba6eafd7a43bf530acc21049e70fc4f4d341d")
PVT = bytes.fromhex("04" + "11" * 64)
SECRETS = [
    SecretValue("token", TOKEN),
    SecretValue("token", EXPIRED_TOKEN),
    SecretValue("trk", TRK),
    SecretValue("ink", INK),
]
HOSTILE = b"<script>alert('kms')</script><img src=https://evil.example/x.png>\xff\xfe\xc3("


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def secret_forms(raw: bytes) -> list[bytes]:
    """Every form a scan looks for: raw, hex both cases, base64 and base64url, padded or not."""
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for encoded in (b64(raw), b64url(raw)):
        forms += [encoded.encode(), encoded.rstrip("=").encode()]
    return forms


def request(
    path: str,
    *,
    token: bytes | None = TOKEN,
    body: bytes = b"",
    variant: str = "valid",
    body_variant: str = "none",
) -> RecordedRequest:
    headers = [("Host", "127.0.0.1:8443"), ("Content-Type", "application/xml")]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token.decode()}"))
    return RecordedRequest(
        method="POST",
        url=BASE + path,
        path="/keymanagement/identity/v1" + path,
        headers=tuple(headers),
        body=body,
        token_variant=variant,
        body_variant=body_variant,
    )


def exchange(
    label: str,
    req: RecordedRequest,
    status: int | None = 200,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    **kw: object,
) -> Exchange:
    return Exchange(
        label=label,
        request=req,
        status=status,
        reason={200: "OK", 401: "Unauthorized", 404: "Not Found"}.get(status or 0, ""),
        headers=(("Content-Type", "application/xml"), *headers),
        body=body,
        elapsed_s=0.012,
        http_version="HTTP/1.1",
        tls=TlsFacts(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256"),
        **kw,  # type: ignore[arg-type]
    )


def check(
    name: str,
    outcome: Outcome,
    reqs: tuple[str, ...],
    message: str,
    *,
    expected: str = "",
    observed: str = "",
    strength: Strength = Strength.SHALL,
) -> CheckResult:
    return CheckResult(
        name=name,
        outcome=outcome,
        message=message,
        reqs=reqs,
        clause="D.3.3",
        strength=strength,
        expected=expected,
        observed=observed,
    )


def keyprov_body() -> bytes:
    return textwrap.dedent(f"""\
        <KmsResponse xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
            xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"
            xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Version="1.0.0">
          <UserUri>sip:alice@example.org</UserUri><KmsUri>kms.example.org</KmsUri>
          <KmsMessage><KmsKeyProv xsi:type="KmsKeyProvTkIkType"><KmsKeySet>
            <UserDecryptKey xsi:type="KeyContentType">{RSK.hex().upper()}</UserDecryptKey>
            <UserSigningKeySSK xsi:type="KeyContentType">
              {b64(SSK)}
            </UserSigningKeySSK>
            <UserPubTokenPVT xsi:type="KeyContentType">{PVT.hex()}</UserPubTokenPVT>
          </KmsKeySet>
          <NewTransportKey xsi:type="EncKeyContentType"><xenc:EncryptedKey>
            <ds:KeyInfo><ds:KeyName>dHJrLTI=</ds:KeyName></ds:KeyInfo>
            <xenc:CipherData><xenc:CipherValue>{b64(TRK)}</xenc:CipherValue></xenc:CipherData>
          </xenc:EncryptedKey></NewTransportKey>
          <NewIntegrityKey xsi:type="KeyContentType">{INK.hex()}</NewIntegrityKey>
          </KmsKeyProv></KmsMessage>
        </KmsResponse>
        """).encode()


def init_body() -> bytes:
    return (
        f'<KmsResponse xmlns="{NS}"><KmsMessage><KmsInit><KmsCertificate>'
        f"<PubEncKey>{'04' + 'ab' * 128}</PubEncKey><PubAuthKey>{'04' + 'cd' * 64}</PubAuthKey>"
        "</KmsCertificate></KmsInit></KmsMessage></KmsResponse>"
    ).encode()


def sample_run() -> RunResult:
    ok = Outcome.OK
    cases = [
        CaseResult(
            id="INIT-001",
            title="KMS Initialize returns KmsInit",
            area="envelope",
            verdict=Verdict.PASS,
            reason="all checks passed",
            reqs=("REQ-004", "REQ-015"),
            clauses=("D.2", "D.3.2"),
            request_types=("init",),
            duration_s=0.05,
            description="POST init with a valid token; expect KmsInit.",
            steps=[
                StepRecord(
                    "init",
                    exchange(
                        "init",
                        request("/init", body=b"<KmsRequest/>", body_variant="valid"),
                        body=init_body(),
                        headers=(("X-Echo-Ink", b64url(INK).rstrip("=")),),
                    ),
                )
            ],
            checks=[check("envelope.root", ok, ("REQ-004",), "root is KmsResponse")],
        ),
        CaseResult(
            id="KEYPROV-UID-001",
            title="Key set UID matches Annex F",
            area="keyset",
            verdict=Verdict.FAIL,
            reason="UserDecryptKey is not a point of E(F_p)",
            reqs=("REQ-098",),
            clauses=("D.3.3",),
            request_types=("keyprov",),
            duration_s=0.2,
            steps=[
                StepRecord(
                    "keyprov",
                    exchange("keyprov", request("/keyprov"), body=keyprov_body()),
                    plaintext=keyprov_body(),
                )
            ],
            checks=[
                check(
                    "keyset.rsk-on-curve",
                    Outcome.VIOLATION,
                    ("REQ-098",),
                    "UserDecryptKey is not a point of E(F_p)",
                    expected="a point on E",
                    observed=f"RSK {RSK.hex()} off the curve",
                ),
                check(
                    "keyset.ssk-range",
                    Outcome.VIOLATION,
                    ("REQ-099",),
                    "SSK out of range",
                    expected="0 < SSK < q",
                    observed=f"SSK={SSK.hex()}",
                ),
                check(
                    "keyset.period",
                    Outcome.WARNING,
                    ("REQ-100",),
                    "ValidTo past period end",
                    strength=Strength.SHOULD,
                ),
            ],
        ),
        CaseResult(
            id="SEC-ENC-002",
            title="Encrypted KmsMessage names TrK-ID",
            area="security",
            verdict=Verdict.INCONC,
            reason="precondition: no TrK provisioned in the target",
            reqs=("REQ-061",),
            clauses=("D.3.1",),
            request_types=("init",),
            strength="should",
            steps=[
                StepRecord(
                    "init",
                    exchange(
                        "init",
                        request("/init"),
                        body=f"<KmsResponse><Note>trk {TRK.hex().upper()} ink {b64(INK)}</Note>"
                        f"</KmsResponse>".encode()
                        + b" raw:"
                        + INK,
                    ),
                )
            ],
            checks=[
                check(
                    "security.trk-id",
                    Outcome.WARNING,
                    ("REQ-064",),
                    f"TrK-ID present on a plain response (ink {INK.hex()})",
                    strength=Strength.SHOULD,
                )
            ],
        ),
        CaseResult(
            id="ERR-TIMEOUT-001",
            title="Unknown path answers 404",
            area="errors",
            verdict=Verdict.ERROR,
            reason="transport error (timeout): no answer in 10 s",
            reqs=("REQ-003",),
            clauses=("D.2.1",),
            request_types=("other",),
            steps=[
                StepRecord(
                    "unknown",
                    exchange(
                        "unknown",
                        request("/nowhere"),
                        status=None,
                        error="no answer in 10 s",
                        error_kind="timeout",
                    ),
                )
            ],
        ),
        CaseResult(
            id="AUTH-EXPIRED-001",
            title="Expired token refused",
            area="errors",
            verdict=Verdict.PASS,
            reason="401",
            reqs=("REQ-017",),
            clauses=("B.5",),
            request_types=("init",),
            strength="should",
            steps=[
                StepRecord(
                    "init",
                    exchange(
                        "init",
                        request("/init", token=EXPIRED_TOKEN, variant="expired"),
                        status=401,
                        body=b"",
                        headers=(("WWW-Authenticate", 'Bearer error="invalid_token"'),),
                    ),
                )
            ],
            checks=[check("errors.status", ok, ("REQ-017",), "401 as expected")],
        ),
        CaseResult(
            id="LOOKUP-001",
            title="KMS Lookup returns KmsUri",
            area="lookup",
            verdict=Verdict.NA,
            reason="PICS: lookup not claimed",
            reqs=("REQ-012",),
            clauses=("D.3.1 (Rel-17)",),
            request_types=("lookup",),
            strength="may",
        ),
        CaseResult(
            id="HOSTILE-<b>001</b>/../x",
            title="Hostile <i>body</i> is a fail",
            area="envelope",
            verdict=Verdict.FAIL,
            reason="response is not XML: <script>alert(1)</script>",
            reqs=("REQ-020",),
            clauses=("D.3.1",),
            request_types=("init",),
            steps=[
                StepRecord(
                    "init",
                    exchange(
                        "init",
                        request("/init"),
                        body=HOSTILE,
                        headers=(("X-Note", "<script>x()</script>"),),
                    ),
                )
            ],
            checks=[
                check(
                    "envelope.xml",
                    Outcome.VIOLATION,
                    ("REQ-020",),
                    "body is not well-formed: <script>",
                    expected="<KmsResponse>",
                    observed=HOSTILE.decode("utf-8", "replace"),
                )
            ],
        ),
    ]
    requirements = [
        RequirementInfo("REQ-001", "D.1", "shall", "All KMS communication uses HTTPS."),
        RequirementInfo("REQ-003", "D.2.1", "shall", "Resource URIs rooted"),
        RequirementInfo("REQ-004", "D.2", "shall", "init performs KMS Initialize"),
        RequirementInfo("REQ-012", "D.3.1 (Rel-17)", "shall", "KMS Lookup"),
        RequirementInfo("REQ-015", "B.5", "shall", "Bearer token"),
        RequirementInfo("REQ-017", "B.5", "should", "Expired token refused"),
        RequirementInfo("REQ-020", "D.3.1", "shall", "XML responses"),
        RequirementInfo("REQ-061", "D.3.1", "shall", "TrK-ID when encrypted"),
        RequirementInfo("REQ-098", "D.3.3", "shall", "RSK valid"),
        RequirementInfo(
            "REQ-150",
            "D.1",
            "shall",
            "TLS profile",
            probe_testable=False,
            untestable_reason="needs the KMS configuration",
        ),
    ]
    return RunResult(
        started=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        duration_s=1.5,
        tool_version="0.1.0",
        target={
            "base_url": BASE.rsplit("/keymanagement", 1)[0],
            "verify_tls": True,
            "embedded": True,
            "faults": [],
        },
        profile="ts33180-r17",
        pics={"cert": True, "lookup": False, "encryption": "keys"},
        cases=cases,
        requirements=requirements,
        secrets=list(SECRETS),
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("reports") / "latest"
    return out, write_reports(sample_run(), out)


def test_write_reports_returns_every_path(written: tuple[Path, dict[str, Path]]) -> None:
    out, paths = written
    assert set(paths) == {"results", "junit", "html", "evidence"}
    assert paths["results"] == out / "results.json"
    assert all(p.exists() for p in paths.values())
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".evidence-" in p.name]


def test_results_json_validates_and_has_design_keys(
    written: tuple[Path, dict[str, Path]],
) -> None:
    _, paths = written
    doc = json.loads(paths["results"].read_text())
    schema = json.loads((REPO / "conformance/report/results.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert {
        "schema",
        "tool_version",
        "started",
        "duration_s",
        "target",
        "profile",
        "summary",
        "requirements",
        "cases",
    } <= set(doc)
    assert doc["schema"] == "kms-conformance/results/1"
    assert doc["summary"] == {
        "pass": 2,
        "fail": 2,
        "inconc": 1,
        "n/a": 1,
        "error": 1,
        "warnings": 2,
    }
    case = doc["cases"][1]
    assert {"id", "title", "verdict", "reqs", "clauses", "duration_s", "checks", "evidence"} <= set(
        case
    )
    assert case["evidence"] == "evidence/KEYPROV-UID-001/"
    assert {"name", "outcome", "reqs", "message", "expected", "observed"} <= set(case["checks"][0])
    assert doc["target"]["pics"]["lookup"] is False


def test_requirement_view(written: tuple[Path, dict[str, Path]]) -> None:
    _, paths = written
    reqs = {r["id"]: r for r in json.loads(paths["results"].read_text())["requirements"]}
    assert len(reqs) == 10
    assert reqs["REQ-001"]["verdict"] == "not tested" and reqs["REQ-001"]["cases"] == []
    assert reqs["REQ-004"] == {**reqs["REQ-004"], "verdict": "pass", "cases": ["INIT-001"]}
    assert reqs["REQ-012"]["verdict"] == "n/a"
    assert reqs["REQ-098"]["verdict"] == "fail"
    assert reqs["REQ-003"]["verdict"] == "error"
    assert reqs["REQ-061"]["verdict"] == "inconc"
    assert reqs["REQ-150"]["verdict"] == "untestable"
    assert reqs["REQ-150"]["untestable_reason"] == "needs the KMS configuration"
    assert reqs["REQ-015"]["section"] == "A" and reqs["REQ-098"]["section"] == "E"


def test_junit_xml(written: tuple[Path, dict[str, Path]]) -> None:
    _, paths = written
    root = etree.parse(str(paths["junit"])).getroot()
    assert etree.XMLSchema(etree.fromstring(JUNIT_XSD)).validate(root.getroottree())
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {
        "kms-conformance." + a for a in ("envelope", "keyset", "security", "errors", "lookup")
    }
    assert suites["kms-conformance.envelope"].get("failures") == "1"
    cases = {c.get("name").split(" ")[0]: c for c in root.iter("testcase")}
    keyprov = cases["KEYPROV-UID-001"]
    assert keyprov.get("classname") == "kms-conformance.keyset"
    assert keyprov.get("name") == "KEYPROV-UID-001 Key set UID matches Annex F"
    props = {p.get("name"): p.get("value") for p in keyprov.iter("property")}
    assert props["case_id"] == "KEYPROV-UID-001" and props["reqs"] == "REQ-098"
    assert props["clause"] == "D.3.3"
    failure = keyprov.find("failure")
    assert failure is not None
    assert failure.get("message") == "UserDecryptKey is not a point of E(F_p)"
    assert "expected: a point on E" in failure.text
    assert "observed: RSK REDACTED-RSK-sha256-" in failure.text
    assert "expected: 0 < SSK < q" in failure.text
    assert cases["ERR-TIMEOUT-001"].find("error") is not None
    assert cases["LOOKUP-001"].find("skipped").get("message") == "PICS: lookup not claimed"
    inconc = cases["SEC-ENC-002"]
    assert inconc.find("skipped").get("type") == "inconc"
    assert {p.get("name"): p.get("value") for p in inconc.iter("property")}["verdict"] == "inconc"
    assert cases["INIT-001"].find("failure") is None and cases["INIT-001"].find("skipped") is None


def test_html_banner_counts_matrix_and_order(written: tuple[Path, dict[str, Path]]) -> None:
    _, paths = written
    page = paths["html"].read_text()
    assert re.search(r'<div id="banner" class="not-conformant">Not conformant</div>', page)
    assert 'id="counts"' in page and 'id="matrix"' in page
    details = page[page.index('id="details"') :]
    order = re.findall(r'<details class="case" id="case-([^"]+)"', details)
    verdicts = [v for v in re.findall(r'<summary>.*?class="v v-([^"]+)"', details)]
    assert verdicts[:4] == ["fail", "fail", "error", "inconc"], (order, verdicts)
    attention = page[page.index('id="attention"') : page.index('id="areas"')]
    assert "KEYPROV-UID-001" in attention and "INIT-001" not in attention
    matrix = page[page.index('id="matrix"') :]
    assert matrix.count('class="req"') == 10
    assert "needs the KMS configuration" in matrix
    for name in ("request.txt", "response.txt", "plaintext.xml"):
        assert f"evidence/KEYPROV-UID-001/01-keyprov/{name}" in page
    assert "Coverage per clause section" in page and "ts33180-r17" in page


def test_html_has_no_network_reference_and_escapes_hostile_content(
    written: tuple[Path, dict[str, Path]],
) -> None:
    _, paths = written
    page = paths["html"].read_text()
    tree = lxml.html.document_fromstring(page)
    remote = [
        (element.tag, name, value)
        for element in tree.iter()
        for name, value in element.attrib.items()
        if re.match(r"\s*(?:[a-z][a-z0-9+.-]*:)?//", value, re.IGNORECASE)
    ]
    assert remote == []
    assert {element.tag for element in tree.iter()} & {"img", "link", "iframe", "object"} == set()
    assert "url(" not in page and "@import" not in page
    assert "<script>alert" not in page and "<img" not in page and "<b>001" not in page
    assert "&lt;script&gt;alert(&#39;kms&#39;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the report's own print helper


def test_evidence_files(written: tuple[Path, dict[str, Path]]) -> None:
    out, _ = written
    case = out / "evidence" / "KEYPROV-UID-001"
    step = case / "01-keyprov"
    for name in ("request.txt", "request.body", "response.txt", "response.body", "plaintext.xml"):
        assert (step / name).is_file(), name
    request_txt = (step / "request.txt").read_bytes().decode()
    assert request_txt.startswith(f"POST {BASE}/keyprov HTTP/1.1\r\n")
    assert "Authorization: Bearer REDACTED-TOKEN-sha256-" in request_txt
    assert (step / "response.txt").read_bytes().startswith(b"HTTP/1.1 200 OK\r\n")
    body = (step / "response.body").read_text()
    assert "REDACTED-RSK-sha256-" in body and "REDACTED-SSK-sha256-" in body
    assert PVT.hex() in body  # public
    assert "<ds:KeyName>dHJrLTI=</ds:KeyName>" in body
    meta = json.loads((case / "case.json").read_text())
    assert meta["verdict"] == "fail" and meta["steps"][0]["dir"] == "01-keyprov"
    assert [c["outcome"] for c in meta["checks"]] == ["violation", "violation", "warning"]
    timeout = (out / "evidence" / "ERR-TIMEOUT-001" / "01-unknown" / "response.txt").read_text()
    assert "transport error (timeout): no answer in 10 s" in timeout
    for case_dir in (out / "evidence").iterdir():
        assert re.fullmatch(r"[A-Za-z0-9._-]+", case_dir.name) and not case_dir.name.startswith(".")
        assert (case_dir / "repro.sh").is_file() and (case_dir / "case.json").is_file()
    assert len(list((out / "evidence").iterdir())) == 7


def test_repro_script(written: tuple[Path, dict[str, Path]]) -> None:
    out, _ = written
    script = out / "evidence" / "AUTH-EXPIRED-001" / "repro.sh"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -eu\n" in text
    assert script.stat().st_mode & 0o111
    assert '"Authorization: Bearer ${KMS_TOKEN_EXPIRED:?set KMS_TOKEN_EXPIRED}"' in text
    assert '--cacert "${KMS_CA_FILE:-ca.pem}"' in text
    assert "--data-binary @01-init/request.body" in text and "-X POST" in text
    assert '"${KMS_ORIGIN:-https://127.0.0.1:8443}"/keymanagement/identity/v1/init' in text
    assert "Host:" not in text
    valid = (out / "evidence" / "INIT-001" / "repro.sh").read_text()
    assert '"Authorization: Bearer ${KMS_TOKEN:?set KMS_TOKEN}"' in valid
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    missing = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert missing.returncode != 0 and "KMS_TOKEN_EXPIRED" in missing.stderr


def test_no_secret_in_any_written_file(written: tuple[Path, dict[str, Path]]) -> None:
    out, _ = written
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20
    values = [s.value for s in SECRETS] + [RSK, SSK]
    leaks = [
        (str(path.relative_to(out)), form[:12])
        for path in files
        for data in [path.read_bytes()]
        for value in values
        for form in secret_forms(value)
        if form in data
    ]
    assert leaks == []


def test_redactor_forms_and_rules() -> None:
    redactor = Redactor(SECRETS)
    for form in secret_forms(TRK):
        out = redactor.bytes(b"x" + form + b"y")
        assert form not in out and b"REDACTED-TRK-sha256-" in out
    assert redactor.text("Authorization: Bearer not-a-known-token").startswith(
        "Authorization: Bearer REDACTED-TOKEN-sha256-"
    )
    assert "not-a-known" not in redactor.text('{"authorization": "Bearer not-a-known-token"}')
    assert redactor.text("missing authorization: observed 200") == (
        "missing authorization: observed 200"
    )
    pub = f"<PubEncKey>{'04' + 'ab' * 128}</PubEncKey>"
    pub += f"<UserPubTokenPVT>{PVT.hex()}</UserPubTokenPVT>"
    assert redactor.text(pub) == pub
    cdata = redactor.text(f"<UserSigningKeySSK><![CDATA[{SSK.hex()}]]></UserSigningKeySSK>")
    assert SSK.hex() not in cdata and "REDACTED-SSK-sha256-" in cdata


def test_redactor_is_linear_on_large_and_hostile_bodies() -> None:
    redactor = Redactor(SECRETS)
    big = (b"A" * 1000 + TRK.hex().encode()) * 2000
    hostile = b"<NewTransportKey>" * 100_000 + b"<![CDATA[" * 50_000 + b"<!--" * 50_000
    start = time.perf_counter()
    assert TRK.hex().encode() not in redactor.bytes(big)
    redactor.bytes(hostile)
    assert time.perf_counter() - start < 10


def test_case_ids_are_safe_directory_names() -> None:
    assert safe_name("../../etc/passwd") == "_.._.._etc_passwd"
    assert safe_name("..") == "_.." and safe_name("") == "_"
    assert safe_name("KEYPROV-UID-001") == "KEYPROV-UID-001"
    dirs = case_dirs(["A/B", "A_B", "a_b", "ok"])
    assert dirs == {"A/B": "A_B", "A_B": "A_B-2", "a_b": "a_b-3", "ok": "ok"}


def test_banner_states() -> None:
    base = {"pass": 3, "fail": 0, "inconc": 0, "n/a": 1, "error": 0, "warnings": 2}
    assert verdict_banner(base) == ("conformant", "Conformant")
    assert verdict_banner({**base, "error": 1})[0] == "inconclusive"
    assert verdict_banner({**base, "inconc": 1})[0] == "inconclusive"
    assert verdict_banner({**base, "fail": 1, "inconc": 1})[0] == "not-conformant"
    assert verdict_banner({**base, "pass": 0})[0] == "inconclusive"


def test_rewrite_replaces_evidence_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    run = sample_run()
    write_reports(run, tmp_path)
    run.cases = run.cases[:2]
    write_reports(run, tmp_path)
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == [
        "INIT-001",
        "KEYPROV-UID-001",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evidence",
        "junit.xml",
        "report.html",
        "results.json",
    ]


def test_allure_decorate_labels_and_redacted_attachments(tmp_path: Path) -> None:
    test_file = tmp_path / "test_allure_case.py"
    test_file.write_text(
        textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_reports import SECRETS, sample_run
        from conformance.report import Redactor
        from conformance.report.allure_support import decorate

        def test_case():
            case = sample_run().cases[1]
            decorate(case, Redactor(SECRETS))
        """)
    )
    results = tmp_path / "allure-results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "--alluredir",
            str(results),
            str(test_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [result_file] = list(results.glob("*-result.json"))
    result = json.loads(result_file.read_text())
    labels = {(label["name"], label["value"]) for label in result["labels"]}
    assert {
        ("epic", "keyset"),
        ("feature", "keyprov"),
        ("story", "REQ-098"),
        ("story", "REQ-099"),
        ("severity", "critical"),
        ("as_id", "KEYPROV-UID-001"),
        ("case_id", "KEYPROV-UID-001"),
    } <= labels
    assert result["name"] == "KEYPROV-UID-001 Key set UID matches Annex F"
    assert [link["name"] for link in result["links"]] == ["D.3.3"]
    names = sorted(a["name"] for a in result["attachments"])
    assert names == ["01-keyprov decrypted KmsMessage", "01-keyprov request", "01-keyprov response"]
    values = [s.value for s in SECRETS] + [RSK, SSK]
    for path in results.iterdir():
        data = path.read_bytes()
        for value in values:
            for form in secret_forms(value):
                assert form not in data, (path.name, form[:12])
    attached = b"".join(p.read_bytes() for p in results.glob("*-attachment*"))
    assert b"REDACTED-RSK-sha256-" in attached and b"REDACTED-TOKEN-sha256-" in attached


# The JUnit layout GitLab and Jenkins read: testsuites > testsuite > testcase with
# failure | error | skipped | system-out | system-err, and properties (as pytest writes them).
JUNIT_XSD = b"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:complexType name="outcome" mixed="true">
    <xs:attribute name="message" type="xs:string"/>
    <xs:attribute name="type" type="xs:string"/>
  </xs:complexType>
  <xs:complexType name="properties">
    <xs:sequence>
      <xs:element name="property" minOccurs="0" maxOccurs="unbounded">
        <xs:complexType>
          <xs:attribute name="name" type="xs:string" use="required"/>
          <xs:attribute name="value" type="xs:string" use="required"/>
        </xs:complexType>
      </xs:element>
    </xs:sequence>
  </xs:complexType>
  <xs:element name="testsuites">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="testsuite" minOccurs="0" maxOccurs="unbounded">
          <xs:complexType>
            <xs:sequence>
              <xs:element name="properties" type="properties" minOccurs="0"/>
              <xs:element name="testcase" minOccurs="0" maxOccurs="unbounded">
                <xs:complexType>
                  <xs:sequence>
                    <xs:element name="properties" type="properties" minOccurs="0"/>
                    <xs:choice minOccurs="0" maxOccurs="unbounded">
                      <xs:element name="failure" type="outcome"/>
                      <xs:element name="error" type="outcome"/>
                      <xs:element name="skipped" type="outcome"/>
                      <xs:element name="system-out" type="xs:string"/>
                      <xs:element name="system-err" type="xs:string"/>
                    </xs:choice>
                  </xs:sequence>
                  <xs:attribute name="name" type="xs:string" use="required"/>
                  <xs:attribute name="classname" type="xs:string"/>
                  <xs:attribute name="time" type="xs:decimal"/>
                </xs:complexType>
              </xs:element>
            </xs:sequence>
            <xs:attribute name="name" type="xs:string"/>
            <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
            <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
            <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
            <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
            <xs:attribute name="time" type="xs:decimal"/>
            <xs:attribute name="timestamp" type="xs:string"/>
          </xs:complexType>
        </xs:element>
      </xs:sequence>
      <xs:attribute name="name" type="xs:string"/>
      <xs:attribute name="tests" type="xs:nonNegativeInteger"/>
      <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
      <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
      <xs:attribute name="time" type="xs:decimal"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""
