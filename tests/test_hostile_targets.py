"""The harness against hostile targets (issue 6 item 3, DESIGN.md section 8).

Each mode of ``tests/hostile/hostile_server.py`` misbehaves on some request types and
relays a reference KMS on the others. The real command line runs against it in a
subprocess, and the test asserts what a user sees: the exit status, a one-line reason per
case that names the problem, no traceback, the canary file's content nowhere, peak memory
under 300 MB and every case within the time its exchanges' timeouts allow.

The command runs on a catalogue folder (``KMS_CONFORMANCE_CASES``) holding only the two
cases used here, copied verbatim from ``testcases/`` (``cli_runs.small_catalogue``).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
import hostile_server
from cli_runs import KMS_CONFORMANCE, Finished, run_cli, small_catalogue

# One init case and one keyprov case; both check the response's Content-Type, so an
# honest relayed answer passes and only the mode's misbehaviour can fail them.
CASES = ("TRANSPORT-CTYPE-001", "TRANSPORT-CTYPE-002")
# A case sends at most two exchanges here (its step and a preliminary KMS Initialize),
# each bounded by timeout_s; the slack covers parsing and checks on a loaded CI machine.
CASE_LIMIT_S = 2 * hostile_server.TIMEOUT_S + 3.0
# Only a real hang gets near this: it bounds the whole command, start-up included.
HANG_LIMIT_S = 150.0
MAX_RSS_MB = 300.0
UPSTREAM_START_S = 60.0


@dataclass(frozen=True)
class Expected:
    exits: tuple[int, ...]
    reason: str  # regex every non-pass reason must match
    passing: tuple[str, ...] = ()  # cases that must pass (the mode spares their requests)


ENTITIES = r"document type declaration|DTD|entit"
EXPECTED: dict[str, Expected] = {
    "xxe": Expected((1,), ENTITIES),
    "entity-bomb": Expected((1,), ENTITIES),
    "big-body": Expected((1,), r"exceeds \d+ bytes"),
    "drip": Expected((1, 3), r"within 3 s"),
    "bad-utf8": Expected((1,), r"UTF-8|not well-formed"),
    "text-content-type": Expected((1,), r"content-type-xml: .*not labelled as XML"),
    "xml-content-type-not-xml": Expected((1,), r"not (usable|well-formed) XML"),
    "redirect": Expected((1,), r"\b302\b|redirect"),
    "wrong-host-cert": Expected((2,), r"TLS.*(mismatch|hostname)"),
    "self-signed-cert": Expected((2,), r"TLS.*self[- ]signed"),
    "reset-mid-body": Expected((1, 3), r"reset|mid-body"),
    # Legal HTTP: the relayed answers must be read in full and judged on their content.
    "http10-close-delimited": Expected((0,), r"^$", passing=CASES),
    "drip-keyprov-only": Expected((1,), r"within 3 s", passing=("TRANSPORT-CTYPE-001",)),
    "reset-keyprov-only": Expected((1,), r"reset|mid-body", passing=("TRANSPORT-CTYPE-001",)),
}
ROWS: list[str] = []


def test_every_mode_has_an_expectation() -> None:
    assert set(EXPECTED) == set(hostile_server.MODES)


@pytest.mark.parametrize("mode", sorted(hostile_server.MODES))
def test_hostile_target(
    mode: str, upstream: tuple[str, Path, dict], catalogue: Path, tmp_path: Path
) -> None:
    base_url, ca_file, upstream_target = upstream
    expected = EXPECTED[mode]
    relay = hostile_server.relay(base_url, ca_file)
    output = tmp_path / "out"
    with hostile_server.serving(mode, tmp_path / "server", relay, upstream_target) as (
        server,
        target_file,
    ):
        argv = ["run", "--target", str(target_file), "--output", str(output), "--cases", *CASES]
        done = run_cli(argv, tmp_path, HANG_LIMIT_S, {"KMS_CONFORMANCE_CASES": str(catalogue)})
        canary = server.canary_file.read_text(encoding="ascii").strip()
        assert canary.startswith("canary-")
        other_host_connections = server.other_host.accepted
        server_failures = list(server.failures)

    cases = _cases(output)
    verdicts = ", ".join(f"{c['id'].split('-')[-1]}:{c['verdict']}" for c in cases) or "-"
    reasons = [c["reason"] for c in cases if c["verdict"] != "pass"]
    if not cases:
        reasons = [line for line in done.stderr.splitlines() if line.strip()]
    row = (
        f"{mode:25} exit {done.status}  {verdicts:28} {done.peak_rss_mb:6.0f} MB "
        f"{done.seconds:5.1f} s  {(reasons or [''])[0][:110]}"
    )
    ROWS.append(row)
    print("\n" + row)

    assert not done.hung, f"{mode}: still running after {HANG_LIMIT_S:.0f} s: {done.stdout[-500:]}"
    assert not server_failures, f"the hostile server itself failed: {server_failures}"
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.status in expected.exits, (
        f"{mode}: exit {done.status}, expected {expected.exits}\n{done.stdout}\n{done.stderr}"
    )
    assert done.peak_rss_mb < MAX_RSS_MB, f"{mode}: peak RSS {done.peak_rss_mb:.0f} MB"
    _assert_absent("the canary", canary, output, done)
    for label, secret in _tokens(upstream_target):
        _assert_absent(label, secret, output, done)
    bodies = [f.read_bytes() for f in output.glob("evidence/*/*/response.body")]
    assert all(len(b) <= hostile_server.MAX_BODY_BYTES for b in bodies)
    if mode in ("xxe", "entity-bomb"):  # the hostile body was received and kept as evidence
        assert any(b"<!DOCTYPE KmsResponse" in b for b in bodies), mode
    assert other_host_connections == 0, f"{mode}: the harness connected to the other host"

    if done.status == 2 and not cases:
        # Preflight: one line on stderr naming the TLS problem, and no report.
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, done.stderr
        assert re.search(expected.reason, lines[0]), lines[0]
        return
    assert {c["id"] for c in cases} == set(CASES), done.stdout + done.stderr
    for case in cases:
        if case["id"] in expected.passing:
            assert case["verdict"] == "pass", f"{case['id']}: {case['verdict']}: {case['reason']}"
            continue
        assert case["duration_s"] < CASE_LIMIT_S, f"{case['id']} took {case['duration_s']:.1f} s"
        assert case["verdict"] in ("fail", "error", "inconc"), case
        reason = case["reason"]
        assert "\n" not in reason and len(reason) <= 400, reason
        assert re.search(expected.reason, reason), f"{case['id']}: {reason!r}"
        # The summary on stdout shows the same reason.
        assert f"{case['id']}: {reason}" in done.stdout


def test_print_table() -> None:
    """The table of the modes this worker ran (``pytest -s`` shows it)."""
    if ROWS:
        print("\nmode                      exit  verdicts (case: verdict)     peak RSS   time")
        print("\n".join(ROWS))


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_catalogue(tmp_path_factory.mktemp("catalogue"), CASES)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict]]:
    """A reference KMS (``kms-conformance serve``) the hostile server relays."""
    state = tmp_path_factory.mktemp("upstream")
    log = (state / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(KMS_CONFORMANCE), "serve", "--state", str(state / "kms"), "--port", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    target_file = state / "kms" / "target.toml"
    deadline = time.monotonic() + UPSTREAM_START_S
    try:
        while not target_file.is_file():
            assert process.poll() is None, (state / "serve.log").read_text()
            assert time.monotonic() < deadline, "the reference KMS did not start"
            time.sleep(0.05)
        time.sleep(0.1)  # the file is written atomically; this only lets the log settle
        document = tomllib.loads(target_file.read_text(encoding="utf-8"))
        settings = document["target"]
        yield settings["base_url"], Path(settings["ca_file"]), document
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _cases(output: Path) -> list[dict]:
    results = output / "results.json"
    if not results.is_file():
        return []
    document = json.loads(results.read_text(encoding="utf-8"))
    return list(document["cases"])


def _tokens(target: dict) -> list[tuple[str, str]]:
    found = [(f"users[{i}].token", u["token"]) for i, u in enumerate(target["users"])]
    found += [(f"tokens.{k}", v) for k, v in target.get("tokens", {}).items()]
    return [(label, value) for label, value in found if isinstance(value, str) and value]


def _assert_absent(label: str, secret: str, output: Path, done: Finished) -> None:
    assert len(secret) > 20, label
    needle = secret.encode()
    assert needle not in done.stdout.encode() + done.stderr.encode(), f"{label} in the output"
    if not output.exists():
        return
    for file in output.rglob("*"):
        if file.is_file():
            assert needle not in file.read_bytes(), f"{label} leaked into {file}"
