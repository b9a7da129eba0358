"""A reader that closes the pipe early is not an error, for any command (issue 13).

Each command runs with its standard output on a real pipe whose reading end is closed
before the command writes a byte, so every write it makes meets a closed pipe (EPIPE):
it must exit with the status it has with every line read (README, "Exit status"), print
no traceback and leave no "Exception ignored" line; ``run`` must still write its reports.
A shell pipeline with ``pipefail`` (``kms-conformance list | head -1``) must succeed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runs import KMS_CONFORMANCE

SHARED = Path(os.environ["KMS_CONFORMANCE_SHARED"])
PEER = SHARED / "peer-samples" / "streamwide-sw_mikey_sakke"


def _closed_pipe(argv: list[str], timeout_s: float = 120.0) -> tuple[int, str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    try:
        done = subprocess.run(
            [str(KMS_CONFORMANCE), *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr.decode(errors="replace")


COMMANDS = {
    "list": (["list"], 0),
    "list-json": (["list", "--json"], 0),
    "explain": (["explain", "TRANSPORT-CTYPE-001"], 0),
    "coverage": (["coverage"], 0),
    "faults": (["faults"], 0),
    "faults-json": (["faults", "--json"], 0),
    "help": (["--help"], 0),
    "check-conformant": (["check", str(PEER / "test_init_response.xml")], 0),
    "check-not-conformant": (
        [
            "check",
            str(PEER / "test_key_prov_response.xml"),
            "--init",
            str(PEER / "test_init_response.xml"),
        ],
        1,
    ),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_closed_pipe_is_not_an_error(name: str) -> None:
    argv, status = COMMANDS[name]
    code, stderr = _closed_pipe(argv)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    assert code == status, f"{argv}: exit {code}, expected {status}: {stderr}"


def test_run_with_a_closed_pipe_still_writes_its_reports(tmp_path: Path) -> None:
    output = tmp_path / "out"
    argv = ["run", "--output", str(output), "--cases", "TRANSPORT-CTYPE-001"]
    code, stderr = _closed_pipe(argv)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert code == 0, stderr
    document = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert [c["verdict"] for c in document["cases"]] == ["pass"]


def test_list_piped_into_head_under_pipefail() -> None:
    script = f"set -o pipefail; {shlex.quote(str(KMS_CONFORMANCE))} list | head -1"
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and "Traceback" not in done.stderr


def test_offline_check_applies_the_structural_limits(tmp_path: Path) -> None:
    """``check`` on a captured answer over a [limits] key: one FAIL line naming it, exit 1."""
    namespace = "urn:3gpp:ns:mcsecKMSInterface:1.0"
    attributes = "".join(f' a{i}="x"' for i in range(5000))
    captured = tmp_path / "flood.xml"
    captured.write_text(f'<KmsResponse xmlns="{namespace}"{attributes}/>', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", "check", str(captured)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    failing = [line for line in done.stdout.splitlines() if "FAIL" in line]
    assert len(failing) == 1, done.stdout
    assert "limits.structure" in failing[0]
    assert "exceeds limits.max_attributes_per_element (200): 5000 on <KmsResponse>" in failing[0]


def test_serve_keeps_serving_with_a_closed_pipe(tmp_path: Path) -> None:
    """``serve | head -3`` is how one reads the URL: the server must outlive its reader."""
    state = tmp_path / "kms"
    read_end, write_end = os.pipe()
    os.close(read_end)
    process = subprocess.Popen(
        [str(KMS_CONFORMANCE), "serve", "--state", str(state)],
        stdout=write_end,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        deadline = time.monotonic() + 60
        while not (state / "target.toml").is_file():
            assert process.poll() is None, process.communicate()[1].decode(errors="replace")
            assert time.monotonic() < deadline, "the reference KMS did not start"
            time.sleep(0.05)
        time.sleep(0.5)  # its last start-up lines meet the closed pipe now
        assert process.poll() is None, process.communicate()[1].decode(errors="replace")
    finally:
        process.terminate()
        stderr = process.communicate(timeout=30)[1].decode(errors="replace")
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
