"""Preflight (issue 11 item 2): a misconfigured target is exit 2 with one line, no verdicts.

Each misconfiguration is real: a closed port, a host name that does not resolve, an HTTPS
server whose certificate names another host, the reference KMS behind a wrong base path,
and the reference KMS given a token it did not issue. A server that answers init with a
KmsError 400 is a real answer and is judged by the cases (the rule stays narrow).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from probe_support.kms import serving_kms
from probe_support.servers import fixed, http_response, raw_server, refused_port, silent
from probe_support.tls import make_pki

CASES = ("INIT-CERT-FIELDS-001", "ENV-VERSION-001")
TARGET = """\
[target]
base_url = "{base_url}"
timeout_s = 3
{extra}

[profile]
release = "ts33180-r17"

[[users]]
uri = "sip:alice@example.org"
token = "preflight-test-token"
"""


def run(target: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance.run.cli",
            "run",
            "--target",
            str(target),
            "--output",
            str(out),
            "--cases",
            *CASES,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def one_line_exit_2(done: subprocess.CompletedProcess[str], out: Path) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not (out / "results.json").exists(), "a misconfigured target got verdicts"
    return lines[0]


def write(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    path = tmp_path / "target.toml"
    path.write_text(TARGET.format(base_url=base_url, extra=extra))
    return path


def test_a_closed_port_is_init_unreachable(tmp_path: Path) -> None:
    port = refused_port()
    target = write(tmp_path, f"https://127.0.0.1:{port}/keymanagement/identity/v1")
    line = one_line_exit_2(run(target, tmp_path / "out"), tmp_path / "out")
    assert str(target) in line
    assert re.search(r"init unreachable: cannot connect: .*[Cc]onnection refused", line), line


def test_a_host_that_does_not_resolve_is_init_unreachable(tmp_path: Path) -> None:
    target = write(tmp_path, "https://kms.no-such-host.invalid/keymanagement/identity/v1")
    line = one_line_exit_2(run(target, tmp_path / "out"), tmp_path / "out")
    assert "init unreachable: cannot connect" in line, line


def test_a_certificate_for_another_host_is_a_tls_failure(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "Preflight CA", dns="kms.other.example")
    with raw_server(fixed(http_response("200 OK", b"")), pki.server_context()) as server:
        target = write(tmp_path, server.https_base_url, f'ca_file = "{pki.ca_file}"')
        line = one_line_exit_2(run(target, tmp_path / "out"), tmp_path / "out")
    assert "init over TLS failed: TLS: certificate verify failed" in line, line
    assert re.search(r"[Hh]ostname mismatch|IP address mismatch", line), line


def test_a_server_that_never_answers_is_init_unreachable(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "Preflight CA")
    with raw_server(silent, pki.server_context()) as server:
        target = write(tmp_path, server.https_base_url, f'ca_file = "{pki.ca_file}"')
        line = one_line_exit_2(run(target, tmp_path / "out"), tmp_path / "out")
    assert "init unreachable: no complete answer within 3 s" in line, line
    assert "waiting for the response" in line, line


def _edited(kms_target: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = kms_target.read_text()
    assert old in text
    path = tmp_path / "edited.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_wrong_base_path_answers_404_for_init(tmp_path: Path) -> None:
    with serving_kms(tmp_path / "kms") as kms:
        base = kms.target.target.base_url
        target = _edited(kms.target_file, tmp_path, base, base.replace("/identity/v1", "/v9"))
        line = one_line_exit_2(run(target, tmp_path / "out"), tmp_path / "out")
    assert "answers 404 for init" in line and "check the path" in line, line
    assert "/keymanagement/v9/init" in line, line


def test_a_refused_valid_token_is_a_misconfiguration(tmp_path: Path) -> None:
    with serving_kms(tmp_path / "kms") as kms:
        token = kms.target.users[0].token
        assert token is not None
        real = token.reveal().decode()
        target = _edited(kms.target_file, tmp_path, real, real[:-6] + "AAAAAA")
        line = one_line_exit_2(run(target, tmp_path / "out"), tmp_path / "out")
    assert "refused with HTTP 401" in line and "every token would be refused" in line, line
    assert real not in line and real[:-6] not in line


def test_a_kms_error_400_on_init_is_judged_not_refused(tmp_path: Path) -> None:
    body = (
        b'<KmsResponse xmlns="urn:3gpp:ns:mcsecKMSInterface:1.0" Version="1.0.0">'
        b"<UserUri>sip:alice@example.org</UserUri><KmsUri>kms.example.org</KmsUri>"
        b"<Time>2026-01-01T00:00:00Z</Time><KmsError><ErrorCode>400</ErrorCode>"
        b"<ErrorMsg>no</ErrorMsg></KmsError></KmsResponse>"
    )
    answer = http_response("400 Bad Request", body, ("Content-Type: application/xml",))
    pki = make_pki(tmp_path / "pki", "Preflight CA")
    with raw_server(fixed(answer), pki.server_context()) as server:
        target = write(tmp_path, server.https_base_url, f'ca_file = "{pki.ca_file}"')
        done = run(target, tmp_path / "out")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "out" / "results.json").is_file()
    assert "FAIL   INIT-CERT-FIELDS-001" in done.stdout


@pytest.mark.parametrize("status", ["401 Unauthorized", "403 Forbidden", "404 Not Found"])
def test_refusals_of_init_by_a_raw_server_stop_the_run(status: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "Preflight CA")
    with raw_server(fixed(http_response(status, b"")), pki.server_context()) as server:
        target = write(tmp_path, server.https_base_url, f'ca_file = "{pki.ca_file}"')
        line = one_line_exit_2(run(target, tmp_path / "out"), tmp_path / "out")
    assert f"HTTP {status[:3]}" in line or f"answers {status[:3]} for init" in line, line
