"""``kms-conformance load`` (issue 16): real Locust processes against the reference KMS.

Every run here is on loopback, bounded in time (--run-time) and in requests (--iterations
per virtual UE), and stops by itself. The distributed run is one master and two workers
as separate processes of the real CLI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.run.runcmd import embedded_kms

CLI = [sys.executable, "-m", "conformance.run.cli"]
TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "load", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _document(output: Path) -> dict:
    data = json.loads((output / "load.json").read_text(encoding="utf-8"))
    assert data["schema"] == "kms-conformance/load/1"
    return data


def _distributed(
    target: Path, out: Path, *master_args: str
) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """One master and two workers of the real CLI, as three processes, on loopback."""
    port = str(_free_port())
    worker = [*CLI, "load", "--worker", "--master-host", "127.0.0.1", "--master-port", port]
    workers = [
        subprocess.Popen(
            [*worker, "--target", str(target), "--output", str(out / f"w{n}")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in (1, 2)
    ]
    try:
        master = _load(
            "--master",
            "--expect-workers",
            "2",
            "--master-port",
            port,
            "--target",
            str(target),
            "--output",
            str(out / "m"),
            *master_args,
        )
        codes = [w.wait(timeout=30) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    return master, codes


@pytest.mark.slow
def test_one_master_two_workers_count_what_they_send_and_check(tmp_path: Path) -> None:
    with embedded_kms([], users=8) as (target, _label):
        master, worker_codes = _distributed(
            target,
            tmp_path,
            "--users",
            "4",
            "--spawn-rate",
            "4",
            "--run-time",
            "20s",
            "--iterations",
            "15",
            "--check-sample",
            "0.5",
        )
    assert master.returncode == 0, master.stdout + master.stderr
    assert worker_codes == [0, 0]
    doc = _document(tmp_path / "m")
    assert doc["mode"] == "distributed" and doc["verdict"] == "pass"
    processes = doc["processes"]
    assert sorted(p["id"] for p in processes) == ["worker0", "worker1"]
    # The bound holds: 4 UEs x 15 iterations x (init + keyprov).
    total = doc["requests"]["total"]["count"]
    assert 0 < total <= 4 * 15 * 2
    # Locust's totals on the master are the sum of what each worker says it sent.
    assert total == sum(p["requests_total"] for p in processes)
    for name, row in doc["requests"]["by_type"].items():
        assert row["count"] == sum(p["requests"].get(name, 0) for p in processes), name
    assert all(p["requests_total"] > 0 for p in processes), "both workers carried load"
    conf = doc["conformance"]
    for part in [*processes, conf]:
        assert part["checked"] + part["dropped"] == part["sampled"]
    assert conf["sampled"] == sum(p["sampled"] for p in processes)
    # The master's --check-sample 0.5 reached the workers (theirs defaulted to 1).
    assert 0 < conf["sampled"] < conf["iterations"]
    assert conf["checked"] > 0 and conf["failed"] == 0
    assert conf["key_sets_validated"] >= conf["checked"]  # one key set per provision at least
    assert (tmp_path / "m" / "locust_stats.csv").is_file()
    assert (tmp_path / "m" / "locust.html").is_file()
    assert "Conformance under load" in (tmp_path / "m" / "load.html").read_text()


@pytest.mark.slow
def test_a_key_material_fault_under_distributed_load_fails_with_its_check_id(
    tmp_path: Path,
) -> None:
    with embedded_kms(["rsk-random-point"], users=4) as (target, _label):
        master, worker_codes = _distributed(
            target,
            tmp_path,
            "--users",
            "2",
            "--run-time",
            "20s",
            "--iterations",
            "5",
            "--check-sample",
            "1",
            "--max-p95-ms",
            "60000",
        )
    assert master.returncode == 1, master.stdout + master.stderr
    assert worker_codes == [0, 0]
    assert "LOAD-PROVISION/keyprov:keyset.sakke" in master.stdout
    doc = _document(tmp_path / "m")
    conf = doc["conformance"]
    assert conf["checked"] > 0 and conf["failed"] == conf["checked"]
    assert set(conf["failures"]) == {"LOAD-PROVISION/keyprov:keyset.sakke"}
    assert sum(conf["failures"].values()) == conf["checked"]
    assert conf["key_sets_validated"] == 0
    assert doc["thresholds"] == [
        {
            "name": "max_p95_ms",
            "limit": 60000.0,
            "observed": pytest.approx(doc["requests"]["total"]["p95_ms"]),
            "held": True,
        }
    ]
    # Evidence is written where the check ran: in the worker's output folder.
    example = conf["examples"][0]
    evidence = [tmp_path / w / example["evidence"] for w in ("w1", "w2")]
    found = [e for e in evidence if (e / "case.json").is_file()]
    assert found, evidence
    texts = [p.read_bytes() for p in found[0].rglob("*") if p.is_file()]
    assert not any(b"eyJhbGciOi" in t for t in texts), "a token reached the evidence"


@pytest.mark.slow
def test_a_full_checker_drops_and_says_so_and_a_missed_threshold_is_exit_1(
    tmp_path: Path,
) -> None:
    done = _load(
        "--users",
        "4",
        "--run-time",
        "15s",
        "--iterations",
        "10",
        "--check-sample",
        "1",
        "--max-pending",
        "1",
        "--min-rps",
        "1000000",
        "--output",
        str(tmp_path),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "threshold min_rps" in done.stdout
    doc = _document(tmp_path)
    assert doc["mode"] == "local"
    conf = doc["conformance"]
    # One job may wait at a time: the rest are dropped, counted, and never called checked.
    assert 0 < conf["sampled"] <= conf["iterations"]
    assert conf["dropped"] > 0 and conf["checked"] > 0
    assert conf["checked"] + conf["dropped"] == conf["sampled"]
    assert f"{conf['dropped']} dropped (checker busy)" in done.stdout
    assert doc["thresholds"][0]["name"] == "min_rps" and doc["thresholds"][0]["held"] is False


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--worker"], "--worker needs --master-host"),
        (["--scenario", "nosuch"], "no scenario 'nosuch'"),
        (["--check-sample", "2"], "--check-sample must lie in 0..1"),
        (["--run-time", "soon"], "--run-time 'soon'"),
        (["--master"], "--master/--worker need --target"),
    ],
)
def test_bad_load_options_are_exit_2_with_one_line(args: list[str], words: str) -> None:
    done = _load(*args, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr


def test_a_broken_user_pattern_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    target = tmp_path / "target.toml"
    target.write_text(
        '[target]\nbase_url = "https://127.0.0.1:9/x"\n[[users]]\nuri = "sip:a@b"\n'
        'token = "t"\n[user_pattern]\nuri = "sip:ue@example.org"\ncount = 3\n'
        'token_template = "t{index}"\n',
        encoding="utf-8",
    )
    done = _load("--target", str(target), timeout=60)
    assert done.returncode == 2
    assert "user_pattern.uri: must be a string containing {index}" in done.stderr


def test_run_and_the_cli_never_import_locust_or_gevent(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from conformance.run import cli\n"
        "assert 'locust' not in sys.modules and 'gevent' not in sys.modules, 'cli import'\n"
        f"code = cli.main(['run', '--cases', 'INIT-CERT-001', '--output', {str(tmp_path)!r}])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent'))\n"
        "print('code', code, 'loaded', bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ},
    )
    assert "code 0 loaded []" in done.stdout, done.stdout + done.stderr


def test_a_user_pattern_gives_each_index_its_own_uri_token_and_keys(tmp_path: Path) -> None:
    from conformance.load.users import PatternUsers, UserPatternError, parse_user_pattern

    template = parse_user_pattern(
        {"uri": "sip:ue{index}@x.org", "count": 3, "first": 5, "token_template": "t-{index}"},
        tmp_path,
    )
    user = PatternUsers(template).user(6)
    assert (user.uri, user.token.text() if user.token else None) == ("sip:ue6@x.org", "t-6")
    with pytest.raises(UserPatternError, match="outside"):
        PatternUsers(template).user(8)
    entry = '{"token": "j-{index}", "trk_id": "dHJr", "trk": "' + "11" * 16 + '"}'
    script = tmp_path / "mint.py"
    script.write_text("import sys\nprint(sys.argv[1])\n", encoding="utf-8")
    command = parse_user_pattern(
        {"uri": "sip:ue{index}@x.org", "count": 2, "token_command": "unused {index}"}, tmp_path
    )
    ran: list[str] = []

    def run(line: str) -> str:
        ran.append(line)
        return entry.replace("{index}", line.rsplit(maxsplit=1)[-1])

    ue = PatternUsers(command, run=run).user(2)
    assert ran == ["unused 2"]
    assert ue.token is not None and ue.token.text() == "j-2"
    assert ue.trk is not None and ue.trk.key_id == b"trk" and ue.trk.key.reveal() == b"\x11" * 16
    printed = parse_user_pattern(
        {"uri": "u{index}", "count": 1, "token_command": f"{sys.executable} {script} tok{{index}}"},
        tmp_path,
    )
    assert PatternUsers(printed).user(1).token.text() == "tok1"  # type: ignore[union-attr]
    with pytest.raises(UserPatternError, match="users_file: file not found"):
        parse_user_pattern({"uri": "u{index}", "count": 1, "users_file": "none.jsonl"}, tmp_path)
    with pytest.raises(UserPatternError, match="exactly one of"):
        parse_user_pattern({"uri": "u{index}", "count": 1}, tmp_path)
