"""``kms-conformance check`` on captures at the edges (issue 11 item 1).

Every capture here is this project's own: real answers of the reference KMS over loopback
HTTPS (unsigned, so that a test may rewrite them), saved as files, as a step folder of this
harness's evidence layout, and as a HAR 1.2 file. Error answers (a KmsResponse carrying
KmsError) are judged as error answers; the time form of keyprov is judged against the
requested period; the KMS's own certificate in its cache is not taken for a partner's.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from probe_support.kms import serving_kms

from conformance.core.exchange import Exchange
from conformance.probe.sender import Probe
from conformance.profiles import get_profile

REQUESTS = {
    "init": {"request": "init"},
    "certcache": {"request": "certcache"},
    "keyprov-time": {"request": "keyprov", "uri": "self", "time": "D6B4323200000000"},
    "keyprov-other": {"request": "keyprov", "uri": "other"},
    "unknown-path": {"request": "raw", "path": "/keymanagement/identity/v1/bogus"},
}
TIME_URL = "/keymanagement/identity/v1/keyprov/sip%3Aalice%40example.org/D6B4323200000000"


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Exchange]]:
    folder = tmp_path_factory.mktemp("kms")
    with (
        serving_kms(folder, {"protection": {"signing": False}}) as kms,
        Probe(kms.target, get_profile(kms.target.profile.release)) as probe,
    ):
        exchanges = {name: probe.send(spec, name) for name, spec in REQUESTS.items()}
    assert exchanges["keyprov-other"].status == 403
    assert exchanges["unknown-path"].status == 404
    yield exchanges


def check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", "check", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def line_of(output: str, name: str) -> str:
    """The output line of the check ``name`` (its second column)."""
    return next(line for line in output.splitlines() if line.split()[1:2] == [name])


def save(tmp_path: Path, name: str, body: bytes) -> Path:
    path = tmp_path / f"{name}.xml"
    path.write_bytes(body)
    return path


def test_a_403_kms_error_is_a_conforming_error_answer(
    captured: dict[str, Exchange], tmp_path: Path
) -> None:
    exchange = captured["keyprov-other"]
    path = save(tmp_path, "forbidden", exchange.body)
    done = check(path, "--status", "403", "--url", exchange.request.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(keyprov, error answer, for sip:bob@example.org, HTTP 403)" in done.stdout
    assert "FAIL" not in done.stdout
    assert "envelope.message-type" not in done.stdout and ".present" not in done.stdout
    assert line_of(done.stdout, "error.code-matches-status").lstrip().startswith("ok")
    assert "ErrorCode 403 is the HTTP status" in done.stdout


def test_a_kms_error_without_request_facts_is_judged_as_an_error_answer(
    captured: dict[str, Exchange], tmp_path: Path
) -> None:
    path = save(tmp_path, "notfound", captured["unknown-path"].body)
    done = check(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cannot tell the request type" not in done.stdout + done.stderr
    assert f"{path} (error answer)" in done.stdout
    assert line_of(done.stdout, "error.kms-error").lstrip().startswith("ok")
    assert "no HTTP status given" in done.stdout


def test_a_broken_error_answer_still_fails(captured: dict[str, Exchange], tmp_path: Path) -> None:
    body = captured["keyprov-other"].body.replace(
        b"<ErrorCode>403</ErrorCode>", b"<ErrorCode>forbidden</ErrorCode>"
    )
    done = check(save(tmp_path, "bad", body), "--status", "403")
    assert done.returncode == 1, done.stdout
    assert "ErrorCode is not an integer" in line_of(done.stdout, "error.kms-error")
    # A status the ErrorCode does not repeat is a warning (a convention), not a failure.
    other = check(save(tmp_path, "other", captured["keyprov-other"].body), "--status", "401")
    assert other.returncode == 0, other.stdout
    assert line_of(other.stdout, "error.code-matches-status").lstrip().startswith("warn")


def test_keyprov_for_a_time_is_judged_against_the_requested_period(
    captured: dict[str, Exchange], tmp_path: Path
) -> None:
    path = save(tmp_path, "keyprov-time", captured["keyprov-time"].body)
    init = save(tmp_path, "init", captured["init"].body)
    done = check(path, "--init", init, "--url", TIME_URL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no key set for the current key period" not in done.stdout
    assert "KeyPeriodNo 1389 for the requested time" in done.stdout
    assert "judged by keyset.key-period-requested" in line_of(
        done.stdout, "keyset.key-period-current"
    )
    assert "at NTP second 3602133554" in done.stdout
    # Another requested time: the same key set is the wrong period, and that fails.
    later = TIME_URL.replace("D6B43232", "D8B43232")
    wrong = check(path, "--init", init, "--url", later)
    assert wrong.returncode == 1, wrong.stdout
    assert "no key set for the requested time's period" in line_of(
        wrong.stdout, "keyset.key-period-requested"
    )


def _cache_with_own_certificate(captured: dict[str, Exchange]) -> bytes:
    """The certcache with the KMS's own Root certificate (from its init answer) added."""
    init = captured["init"].body.decode()
    own = re.search(r"<KmsCertificate .*?</KmsCertificate>", init, re.S)
    assert own and 'Role="Root"' in own.group(0)
    cache = captured["certcache"].body.decode()
    return (
        cache.replace("<KmsCertCache Version", "<KmsCertCache Version", 1)
        .replace('CacheNum="3">', 'CacheNum="3">' + own.group(0), 1)
        .encode()
    )


def test_the_kms_own_certificate_in_its_cache_is_not_a_partner(
    captured: dict[str, Exchange], tmp_path: Path
) -> None:
    body = _cache_with_own_certificate(captured)
    done = check(save(tmp_path, "cache", body))
    assert done.returncode == 0, done.stdout
    assert "has Role Root" not in done.stdout
    assert line_of(done.stdout, "certcache.role-external").lstrip().startswith("ok")
    # A partner's certificate saying Role Root is still found.
    partner = body.replace(b'Role="External"', b'Role="Root"', 1)
    warned = check(save(tmp_path, "partner", partner))
    assert "partner certificate kms.partner1.example.net has Role Root" in warned.stdout


def test_kms_uri_flag_is_compared_with_the_envelope(
    captured: dict[str, Exchange], tmp_path: Path
) -> None:
    path = save(tmp_path, "cache", captured["certcache"].body)
    good = check(path, "--kms-uri", "kms.example.org")
    assert "KmsUri is kms.example.org" in line_of(good.stdout, "envelope.kms-uri")
    bad = check(path, "--kms-uri", "kms.other.example")
    assert bad.returncode == 1
    assert "expected kms.other.example" in line_of(bad.stdout, "envelope.kms-uri")


def _write_step(folder: Path, exchange: Exchange) -> None:
    """A step folder in the layout of conformance/report/evidence.py."""
    folder.mkdir(parents=True)
    request = f"POST {exchange.request.url} HTTP/1.1\r\nHost: kms\r\n\r\n"
    (folder / "request.txt").write_text(request)
    head = [f"HTTP/1.1 {exchange.status} X"] + [f"{k}: {v}" for k, v in exchange.headers]
    (folder / "response.txt").write_bytes("\r\n".join(head).encode() + b"\r\n\r\n" + exchange.body)
    (folder / "response.body").write_bytes(exchange.body)


def test_an_evidence_case_folder_is_checked_step_by_step(
    captured: dict[str, Exchange], tmp_path: Path
) -> None:
    case = tmp_path / "evidence" / "KEYPROV-TIME-001"
    _write_step(case / "01-init", captured["init"])
    _write_step(case / "02-keyprov", captured["keyprov-time"])
    _write_step(case / "03-other", captured["keyprov-other"])
    done = check(case)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{case / '01-init'} (init, HTTP 200)" in done.stdout
    assert "02-keyprov (keyprov, for sip:alice@example.org, at NTP second 3602133554" in done.stdout
    assert "03-other (keyprov, error answer, for sip:bob@example.org, HTTP 403)" in done.stdout
    one = check(case / "03-other")
    assert one.returncode == 0 and "ErrorCode 403 is the HTTP status" in one.stdout


def test_the_evidence_of_a_real_run_can_be_checked(tmp_path: Path) -> None:
    """The folder a run writes is a capture folder as it stands."""
    with serving_kms(tmp_path / "kms", {"protection": {"signing": False}}) as kms:
        out = tmp_path / "reports"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "conformance.run.cli",
                "run",
                "--target",
                str(kms.target_file),
                "--output",
                str(out),
                "--cases",
                "ERR-SHAPE-001",
                "INIT-CERT-FIELDS-001",
                "KEYPROV-TIME-001",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout[-2000:]
    for case in ("ERR-SHAPE-001", "INIT-CERT-FIELDS-001"):
        checked = check(out / "evidence" / case)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "FAIL" not in checked.stdout
    assert "error answer" in check(out / "evidence" / "ERR-SHAPE-001").stdout
    # Evidence redacts private keys (markers that are valid XML text): the rest of the key
    # set is judged, and check says which key material it could not judge.
    redacted = check(out / "evidence" / "KEYPROV-TIME-001")
    assert redacted.returncode == 0, redacted.stdout + redacted.stderr
    assert "FAIL" not in redacted.stdout and "Traceback" not in redacted.stderr
    assert "UserDecryptKey is redacted in this file (REDACTED-RSK-sha256-" in redacted.stdout


def test_a_har_file_is_checked_entry_by_entry(
    captured: dict[str, Exchange], tmp_path: Path
) -> None:
    def entry(exchange: Exchange, *, b64: bool = False) -> dict[str, object]:
        text = base64.b64encode(exchange.body).decode() if b64 else exchange.body.decode()
        content: dict[str, object] = {
            "size": len(exchange.body),
            "mimeType": "application/xml",
            "text": text,
        }
        if b64:
            content["encoding"] = "base64"
        return {
            "startedDateTime": "2026-01-01T00:00:00Z",
            "time": 1,
            "request": {
                "method": "POST",
                "url": exchange.request.url,
                "httpVersion": "HTTP/1.1",
                "headers": [],
                "queryString": [],
                "cookies": [],
                "headersSize": -1,
                "bodySize": 0,
            },
            "response": {
                "status": exchange.status,
                "statusText": "",
                "httpVersion": "HTTP/1.1",
                "headers": [{"name": k, "value": v} for k, v in exchange.headers],
                "cookies": [],
                "content": content,
                "redirectURL": "",
                "headersSize": -1,
                "bodySize": -1,
            },
            "cache": {},
            "timings": {"send": 0, "wait": 1, "receive": 0},
        }

    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "test", "version": "1"},
            "entries": [
                entry(captured["init"]),
                entry(captured["keyprov-time"], b64=True),
                entry(captured["unknown-path"]),
            ],
        }
    }
    path = tmp_path / "session.har"
    path.write_text(json.dumps(har))
    done = check(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "#0 (POST /keymanagement/identity/v1/init) (init, HTTP 200)" in done.stdout
    assert "#1 (POST " in done.stdout and "at NTP second 3602133554" in done.stdout
    assert "#2 (POST /keymanagement/identity/v1/bogus) (error answer, HTTP 404)" in done.stdout
    assert "no key set for the current key period" not in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--url", "/keymanagement/identity/v1/keyprov/sip%3Aa%40b/now"], "not a 64-bit NTP"),
        (["--url", "/keymanagement/identity/v1/certcache/five"], "not an integer"),
        (["--url", "/somewhere/else"], "names none of the KMS requests"),
    ],
)
def test_unusable_request_facts_exit_2_with_one_line(
    captured: dict[str, Exchange], tmp_path: Path, args: list[str], says: str
) -> None:
    done = check(save(tmp_path, "init", captured["init"].body), *args)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unusable_capture_folders_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.har").write_text('{"log": {}}')
    for path, says in (
        (tmp_path / "empty", "holds no response.body"),
        (tmp_path / "bad.har", "not a HAR 1.2 file"),
    ):
        done = check(path)
        assert done.returncode == 2 and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def _prefixed_root(body: bytes, key_default_ns: str | None) -> bytes:
    """The KMS namespace moved to prefix k:, the unprefixed xsi:type values left as they were."""
    text = body.decode().replace(
        'xmlns="urn:3gpp:ns:mcsecKMSInterface:1.0"', 'xmlns:k="urn:3gpp:ns:mcsecKMSInterface:1.0"'
    )
    text = re.sub(r"<(/?)(?![\w.-]+:)([\w.-]+)", r"<\1k:\2", text.split("?>", 1)[1])
    if key_default_ns:
        text = text.replace("<k:UserDecryptKey ", f'<k:UserDecryptKey xmlns="{key_default_ns}" ')
    return text.encode()


def test_an_unresolved_xsi_type_names_the_resolved_qname_and_why(
    captured: dict[str, Exchange], tmp_path: Path
) -> None:
    body = captured["keyprov-time"].body
    no_default = check(save(tmp_path, "a", _prefixed_root(body, None)), "--url", TIME_URL)
    assert no_default.returncode == 1
    line = line_of(no_default.stdout, "keyset.xsi-type")
    assert (
        "UserDecryptKey has xsi:type 'KeyContentType', which resolves to {}KeyContentType "
        "(the default namespace is none (no namespace) on this element), not "
        "{urn:3gpp:ns:mcsecKMSInterface:1.0}KeyContentType or "
        "{urn:3gpp:ns:mcsecKMSInterface:1.0}EncKeyContentType"
    ) in line, line
    other = check(save(tmp_path, "b", _prefixed_root(body, "urn:other")), "--url", TIME_URL)
    line = line_of(other.stdout, "keyset.xsi-type")
    assert "resolves to {urn:other}KeyContentType" in line, line
    assert "the default namespace is urn:other on this element" in line, line
