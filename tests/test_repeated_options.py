"""Repeated list options add up (issue 11 item 3): ``--cases A --cases B`` runs both, and
``--embedded-fault`` takes both the repeated and the space-separated form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from probe_support.kms import serving_kms


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        cwd=cwd,
    )


def verdicts(out: Path) -> dict[str, str]:
    results = json.loads((out / "results.json").read_text())
    return {c["id"]: c["verdict"] for c in results["cases"]}


def test_repeated_cases_add_up(tmp_path: Path) -> None:
    with serving_kms(tmp_path / "kms") as kms:
        done = cli(
            "run",
            "--target",
            str(kms.target_file),
            "--output",
            str(tmp_path / "a"),
            "--cases",
            "INIT-CERT-FIELDS-001",
            "--cases",
            "ENV-VERSION-001",
            "KEYPROV-UID-001",
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert verdicts(tmp_path / "a") == {
        "INIT-CERT-FIELDS-001": "pass",
        "ENV-VERSION-001": "pass",
        "KEYPROV-UID-001": "pass",
    }


def test_repeated_embedded_faults_add_up(tmp_path: Path) -> None:
    cases = ("--cases", "TRANSPORT-CACHE-001", "--cases", "TRANSPORT-CTYPE-001")
    repeated = cli(
        "run",
        "--output",
        str(tmp_path / "r"),
        "--embedded-fault",
        "no-cache-control",
        "--embedded-fault",
        "content-type-text-plain",
        *cases,
        cwd=tmp_path,
    )
    spaced = cli(
        "run",
        "--output",
        str(tmp_path / "s"),
        "--embedded-fault",
        "no-cache-control",
        "content-type-text-plain",
        *cases,
        cwd=tmp_path,
    )
    for done, out in ((repeated, tmp_path / "r"), (spaced, tmp_path / "s")):
        assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
        assert "with fault no-cache-control, content-type-text-plain" in done.stdout
        assert verdicts(out) == {"TRANSPORT-CACHE-001": "fail", "TRANSPORT-CTYPE-001": "fail"}


def test_refkms_serve_takes_both_forms_of_fault(tmp_path: Path) -> None:
    for args in (["--fault", "nope-a", "--fault", "nope-b"], ["--fault", "nope-a", "nope-b"]):
        done = subprocess.run(
            [sys.executable, "-m", "refkms", "serve", "--state", str(tmp_path / "s"), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 2 and "unknown fault 'nope-a'" in done.stderr, done.stderr


def test_faults_needing_different_protection_cannot_be_combined(tmp_path: Path) -> None:
    done = cli(
        "run",
        "--output",
        str(tmp_path / "x"),
        "--embedded-fault",
        "enc-wrong-key",
        "keys-wrapped-wrong-key",
        "--cases",
        "SEC-ENC-KEY-001",
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout[-2000:]
    [line] = done.stderr.strip().splitlines()
    assert "faults enc-wrong-key and keys-wrapped-wrong-key need different embedded" in line


def test_the_fault_setting_is_laid_over_the_users_embedded_config(tmp_path: Path) -> None:
    config = tmp_path / "refkms.toml"
    config.write_text(
        'kms_uri = "kms.custom.example"\n\n[protection]\nencryption = "none"\nsigning = false\n\n'
        '[[users]]\nuri = "sip:alice@example.org"\ntrk_id = "dHJrLjEuYWxpY2U="\n'
        'ink_id = "aW5rLjEuYWxpY2U="\n\n[[users]]\nuri = "sip:bob@example.org"\n'
        'trk_id = "dHJrLjEuYm9i"\n'
    )
    out = tmp_path / "o"
    done = cli(
        "run",
        "--output",
        str(out),
        "--embedded-config",
        str(config),
        "--embedded-fault",
        "enc-aes-cbc",
        "--cases",
        "SEC-ENC-ALG-001",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert 'protection.encryption = "message" (instead of "none")' in done.stderr
    assert verdicts(out) == {"SEC-ENC-ALG-001": "fail"}
    bodies = b"".join(p.read_bytes() for p in out.glob("evidence/SEC-ENC-ALG-001/*/response.body"))
    assert b"kms.custom.example" in bodies and b"EncryptedData" in bodies
    assert b"SignedKmsResponse" not in bodies  # the user's signing = false was kept


def test_toml_text_round_trips_what_tomllib_reads() -> None:
    import tomllib

    from conformance.run.embedded_config import toml_text

    document = {
        "kms_uri": "kms.example.org",
        "cache_num": 3,
        "kat": False,
        "kms_domain_list": ["a.example", 'b "quoted" example'],
        "protection": {"encryption": "message", "signing": True},
        "users": [{"uri": "sip:alice@example.org", "trk_id": "dHJr"}, {"uri": "sip:b@x"}],
        "lookup": {"sip:dave@partner1.example.net": "kms.partner1.example.net"},
    }
    assert tomllib.loads(toml_text(document)) == document
