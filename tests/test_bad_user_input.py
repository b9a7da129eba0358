"""Bad input from the user (issue 6 item 5, DESIGN.md sections 4, 5 and 8).

A wrong target file, an unknown profile, a missing CA file, an unreachable target, a
broken case file, an unknown case id or an unknown fault name: the real command line
exits 2 with one line on stderr that names the file (and the key or line) and the
problem, never a traceback.
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
from cli_runs import CATALOGUE, Finished, run_cli, small_catalogue

CASE = "TRANSPORT-CTYPE-001"
LIMIT_S = 120.0
VALID_TARGET = """\
[target]
base_url = "{base_url}"
timeout_s = 2

[profile]
release = "ts33180-r17"

[[users]]
uri = "sip:alice@example.org"
token = "bad-input-test-token"
"""


@dataclass(frozen=True)
class BadTarget:
    """A change to the valid target file and what the message must say about it."""

    change: Callable[[str], str]
    says: tuple[str, ...]  # regexes the stderr line must match, besides the file name


def _replace(old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)

    return change


BAD_TARGETS: dict[str, BadTarget] = {
    "toml-syntax-error": BadTarget(
        _replace("[profile]", "[profile"), (r"not valid TOML", r"line 5\b")
    ),
    "unknown-key": BadTarget(
        _replace("timeout_s = 2", 'timeout_s = 2\ncolour = "red"'),
        (r"target\.colour: unknown key",),
    ),
    "unknown-table": BadTarget(
        lambda text: text + '\n[extras]\nnote = "x"\n', (r"\bextras: unknown key",)
    ),
    "wrong-type-number": BadTarget(
        _replace("timeout_s = 2", 'timeout_s = "fast"'),
        (r"target\.timeout_s: must be a number, not a string",),
    ),
    "wrong-type-boolean": BadTarget(
        _replace("timeout_s = 2", 'timeout_s = 2\nverify_tls = "yes"'),
        (r"target\.verify_tls: must be true or false",),
    ),
    "not-an-https-url": BadTarget(
        _replace('base_url = "https://', 'base_url = "ftp://'),
        (r"target\.base_url: .*not an http\(s\) URL",),
    ),
    "no-users": BadTarget(lambda text: text.split("[[users]]")[0], (r"\busers: missing",)),
    "missing-ca-file": BadTarget(
        _replace("timeout_s = 2", 'timeout_s = 2\nca_file = "no-such-ca.pem"'),
        (r"target\.ca_file: file not found: .*no-such-ca\.pem",),
    ),
    "token-env-not-set": BadTarget(
        _replace(
            'token = "bad-input-test-token"', 'token_env = "KMS_CONFORMANCE_TEST_UNSET_TOKEN"'
        ),
        (r"users\[0\]\.token_env: environment variable KMS_CONFORMANCE_TEST_UNSET_TOKEN",),
    ),
    "not-utf8": BadTarget(lambda text: text.replace("alice", "al\udcffice"), (r"not UTF-8",)),
}


@pytest.mark.parametrize("name", sorted(BAD_TARGETS))
def test_bad_target_file(name: str, tmp_path: Path, small: Path, closed_port: int) -> None:
    bad = BAD_TARGETS[name]
    target = tmp_path / "target.toml"
    text = bad.change(VALID_TARGET.format(base_url=f"https://127.0.0.1:{closed_port}/kms"))
    target.write_bytes(text.encode("utf-8", "surrogateescape"))
    done = _run(tmp_path, ["--target", str(target)], small)
    line = _one_line_exit_2(done)
    assert str(target) in line, line
    for pattern in bad.says:
        assert re.search(pattern, line), f"{pattern!r} not in {line!r}"


def test_target_file_not_found(tmp_path: Path, small: Path) -> None:
    missing = tmp_path / "no-such-target.toml"
    line = _one_line_exit_2(_run(tmp_path, ["--target", str(missing)], small))
    assert str(missing) in line and "not found" in line, line


def test_unknown_profile(tmp_path: Path, small: Path, closed_port: int) -> None:
    target = _target(tmp_path, closed_port, release="ts33180-r99")
    line = _one_line_exit_2(_run(tmp_path, ["--target", str(target)], small))
    assert re.search(r"unknown profile 'ts33180-r99'.*known profiles: .*ts33180-r17", line)


def test_unreachable_target(tmp_path: Path, small: Path, closed_port: int) -> None:
    target = _target(tmp_path, closed_port)
    line = _one_line_exit_2(_run(tmp_path, ["--target", str(target)], small))
    assert f"https://127.0.0.1:{closed_port}/kms" in line, line
    assert re.search(r"unreachable: cannot connect: .*[Cc]onnection refused", line), line
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("problem", ["unknown-profile", "unreachable"])
def test_target_problems_name_the_file(
    problem: str, tmp_path: Path, small: Path, closed_port: int
) -> None:
    release = "ts33180-r99" if problem == "unknown-profile" else "ts33180-r17"
    target = _target(tmp_path, closed_port, release=release)
    line = _one_line_exit_2(_run(tmp_path, ["--target", str(target)], small))
    assert str(target) in line, line
    if problem == "unknown-profile":
        assert "profile.release" in line, line


def test_unknown_case_id(tmp_path: Path, small: Path, closed_port: int) -> None:
    target = _target(tmp_path, closed_port)
    done = _run(tmp_path, ["--target", str(target)], small, cases=["NOPE-CASE-999"])
    line = _one_line_exit_2(done)
    assert re.search(r"no case matches NOPE-CASE-999", line), line


def test_unknown_embedded_fault(tmp_path: Path, small: Path) -> None:
    done = _run(tmp_path, ["--embedded-fault", "no-such-fault"], small)
    line = _one_line_exit_2(done)
    assert re.search(r"unknown fault 'no-such-fault'", line), line


def test_embedded_fault_with_a_target(tmp_path: Path, small: Path, closed_port: int) -> None:
    target = _target(tmp_path, closed_port)
    done = _run(tmp_path, ["--target", str(target), "--embedded-fault", "no-cache-control"], small)
    line = _one_line_exit_2(done)
    assert "--embedded-fault" in line, line


@pytest.mark.parametrize("breakage", ["yaml-syntax", "schema"])
def test_broken_case_file(breakage: str, tmp_path: Path, closed_port: int) -> None:
    catalogue = tmp_path / "testcases"
    shutil.copytree(CATALOGUE, catalogue)
    # The first file in load order, so the run fails fast.
    broken = sorted(p for p in catalogue.glob("*.yaml") if p.stem != "requirements")[0]
    lines = broken.read_text(encoding="utf-8").splitlines()
    if breakage == "yaml-syntax":
        number = next(i for i, ln in enumerate(lines) if ln.strip().startswith("title:")) + 1
        lines[number - 1] = lines[number - 1] + ": not: a mapping"
        says = r"not valid YAML"
    else:
        number = next(i for i, ln in enumerate(lines) if re.search(r"request: \w+", ln)) + 1
        lines[number - 1] = re.sub(r"request: \w+", "request: teleport", lines[number - 1])
        says = r"'teleport' is not one of"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = _target(tmp_path, closed_port)
    line = _one_line_exit_2(_run(tmp_path, ["--target", str(target)], catalogue))
    assert f"{broken}:{number}: " in line, line
    assert re.search(says, line), line


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_catalogue(tmp_path_factory.mktemp("catalogue"), (CASE,))


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _target(directory: Path, port: int, *, release: str = "ts33180-r17") -> Path:
    path = directory / "target.toml"
    text = VALID_TARGET.format(base_url=f"https://127.0.0.1:{port}/kms")
    path.write_text(text.replace("ts33180-r17", release), encoding="utf-8")
    return path


def _run(
    directory: Path, options: list[str], catalogue: Path, cases: list[str] | None = None
) -> Finished:
    argv = ["run", *options, "--output", str(directory / "out"), "--cases", *(cases or [CASE])]
    return run_cli(argv, directory / "run", LIMIT_S, {"KMS_CONFORMANCE_CASES": str(catalogue)})


def _one_line_exit_2(done: Finished) -> str:
    everything = done.stdout + done.stderr
    assert not done.hung
    assert "Traceback" not in everything, everything
    assert done.status == 2, f"exit {done.status}\n{everything}"
    assert len(done.stderr_lines) == 1, done.stderr
    line = done.stderr_lines[0]
    assert line.startswith("kms-conformance run: "), line
    return line
