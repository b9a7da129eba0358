"""No state between requests that a case does not ask for (issue 13, class 3).

The hostile server relays honest answers, adds two session cookies to each, and keeps
every connection open, so a client that stored cookies or reused connections would show
it. It notes, per request, the client's port (one TCP connection each), whether an
Authorization header came and any Cookie header.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile_server
from cli_runs import run_cli, small_catalogue

from conformance.probe.sender import Probe
from conformance.profiles import get_profile
from conformance.run.runcmd import embedded_kms
from conformance.target.file import load_target

# Catalogue order: two tokenless cases (the first also makes the run's one authenticated
# KMS Initialize), then two authenticated ones.
CASES = (
    "ERR-AUTH-NOTOKEN-001",
    "ERR-AUTH-NOTOKEN-002",
    "TRANSPORT-CTYPE-001",
    "TRANSPORT-CTYPE-002",
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, Path, dict]]:
    with embedded_kms(()) as (target_file, _label):
        document = tomllib.loads(target_file.read_text(encoding="utf-8"))
        yield document["target"]["base_url"], Path(document["target"]["ca_file"]), document


def test_probe_sends_no_cookie_and_keeps_identities_on_their_own_connections(
    tmp_path: Path,
) -> None:
    with hostile_server.serving("set-cookie", tmp_path / "server") as (server, file):
        target = load_target(file)
        with Probe(target, get_profile(target.profile.release)) as probe:
            first = probe.send({"request": "init"}, "a")
            second = probe.send({"request": "init"}, "b")
            tokenless = probe.send({"request": "init", "token": "none"}, "c")
            again = probe.send({"request": "init"}, "d")
        seen = list(server.seen)
    assert all(e.status == 200 for e in (first, second, tokenless, again)), [
        (e.status, e.error) for e in (first, second, tokenless, again)
    ]
    assert any(k.lower() == "set-cookie" for k, _ in first.headers)
    assert len(server.cookies_set) == 4
    assert [cookie for *_, cookie in seen] == [None] * 4
    ports = [port for port, *_ in seen]
    assert [auth for _, _, auth, _ in seen] == [True, True, False, True]
    # Keep-alive works within an identity (so the next line could fail)...
    assert ports[0] == ports[1] == ports[3], ports
    # ...and the tokenless request came on a connection no token ever travelled on.
    assert ports[2] not in (ports[0], ports[1], ports[3]), ports


@pytest.mark.slow
def test_run_sends_no_cookie_back_and_records_none(
    upstream: tuple[str, Path, dict], tmp_path: Path
) -> None:
    base_url, ca_file, target = upstream
    catalogue = small_catalogue(tmp_path / "catalogue", CASES)
    relay = hostile_server.relay(base_url, ca_file)
    output = tmp_path / "out"
    with hostile_server.serving("set-cookie", tmp_path / "server", relay, target) as (server, file):
        argv = ["run", "--target", str(file), "--output", str(output), "--cases", *CASES]
        done = run_cli(argv, tmp_path, 120.0, {"KMS_CONFORMANCE_CASES": str(catalogue)})
        seen = list(server.seen)
        cookies = list(server.cookies_set)
    assert not done.hung and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.status in (0, 1), done.stdout + done.stderr  # verdicts are the KMS's business
    assert cookies and len(seen) >= len(CASES) + 1
    assert [c for *_, c in seen if c is not None] == [], "a cookie came back"
    authenticated = {port for port, _, auth, _ in seen if auth}
    anonymous = {port for port, _, auth, _ in seen if not auth}
    assert authenticated and anonymous
    assert not authenticated & anonymous, "a tokenless request rode on an authenticated connection"
    # What the harness sent, as evidence and as a script, holds no cookie (what the target
    # sent, in response.txt, shows its Set-Cookie headers as received).
    sent = [*output.glob("evidence/*/*/request.txt"), *output.glob("evidence/*/repro.sh")]
    sent += [p for p in output.glob("allure-results/*-attachment*") if _is_request(p)]
    assert len(sent) >= 2 * len(CASES)
    for path in sent:
        data = path.read_bytes()
        assert b"cookie" not in data.lower(), path
        assert not any(c.encode() in data for c in cookies), path
    assert any(
        b"Set-Cookie: session=" in p.read_bytes() for p in output.glob("evidence/*/*/response.txt")
    )


def _is_request(path: Path) -> bool:
    head = path.read_bytes()[:8]
    return head.startswith((b"POST ", b"GET "))
