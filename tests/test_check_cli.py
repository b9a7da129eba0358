"""``kms-conformance check`` on captured responses: verdicts, messages and exit statuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PEER = Path(os.environ["KMS_CONFORMANCE_SHARED"]) / "peer-samples" / "streamwide-sw_mikey_sakke"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "conformance.run.cli", "check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def line_of(output: str, check: str) -> str:
    return next(line for line in output.splitlines() if f" {check} " in line)


def test_streamwide_init_response_is_conformant() -> None:
    done = run(str(PEER / "test_init_response.xml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "conformant: " in done.stdout and "FAIL" not in done.stdout


def test_streamwide_key_prov_fails_key_validation_and_xsi_type() -> None:
    done = run(
        str(PEER / "test_key_prov_response.xml"), "--init", str(PEER / "test_init_response.xml")
    )
    assert done.returncode == 1
    assert "ECCSI validation fails" in line_of(done.stdout, "keyset.eccsi")
    assert "RSK validation fails" in line_of(done.stdout, "keyset.sakke")
    assert "no xsi:type" in line_of(done.stdout, "keyset.xsi-type")
    assert line_of(done.stdout, "keyset.uid").lstrip().startswith("ok")
    assert "Traceback" not in done.stderr


def test_unusable_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.xml"
    junk.write_bytes(b"<KmsResponse><unclosed>")
    for args in (
        [str(tmp_path / "absent.xml")],
        [str(junk)],
        [str(PEER / "test_init_response.xml"), "--request-type", "bogus"],
        [str(PEER / "test_init_response.xml"), "--target", str(tmp_path / "none.toml")],
    ):
        done = run(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_wrong_root_is_a_failed_check(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_bytes(b'<KmsResponse xmlns="urn:not:3gpp"/>')
    done = run(str(other))
    assert done.returncode == 1
    assert "expected KmsResponse" in line_of(done.stdout, "envelope.root")
