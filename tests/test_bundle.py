"""The signed certification bundle on real runs of the embedded KMS (issue 14, docs/BUNDLE.md).

Runs: the compliant reference KMS; fault cert-unknown-answered-200 with a waiver for the
case it breaks (a waived deviation, still a certification); the same fault without the
waiver (an unwaived failure: no certification).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from conformance.run import bundle as bundle_mod

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conformance.run.cli"]
CASES = ("INIT-CERT-001", "CERT-UNKNOWN-001")
FAULT = "cert-unknown-answered-200"
WAIVER = (
    '[[waiver]]\ncase = "CERT-UNKNOWN-001"\nreason = "known; fixed in 4.2"\nexpires = 2099-12-31\n'
)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=240, cwd=cwd or ROOT, env=env
    )


def _write_key(path: Path, key: object) -> tuple[Path, Path]:
    private = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.with_suffix(".pem").write_bytes(private)
    path.with_suffix(".pub").write_bytes(public)
    return path.with_suffix(".pem"), path.with_suffix(".pub")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bundle")
    paths: dict[str, Path] = {}
    paths["ec_key"], paths["ec_pub"] = _write_key(
        base / "lab-ec", ec.generate_private_key(ec.SECP256R1())
    )
    paths["ed_key"], paths["ed_pub"] = _write_key(
        base / "lab-ed", ed25519.Ed25519PrivateKey.generate()
    )
    (base / "waivers.toml").write_text(WAIVER)
    for name, extra in (
        ("good", []),
        ("waived", ["--embedded-fault", FAULT, "--waivers", str(base / "waivers.toml")]),
        ("failing", ["--embedded-fault", FAULT]),
    ):
        out = base / name
        done = cli("run", "--output", str(out), "--cases", *CASES, *extra)
        assert done.returncode == (1 if name == "failing" else 0), done.stdout[-2000:] + done.stderr
        paths[name] = out
    paths["base"] = base
    bundle = base / "good.zip"
    done = cli("bundle", str(paths["good"]), "--key", str(paths["ec_key"]), "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    paths["bundle"] = bundle
    return paths


def test_bundle_holds_the_run_and_a_signed_in_toto_manifest(work: dict[str, Path]) -> None:
    archive = zipfile.ZipFile(work["bundle"])
    names = set(archive.namelist())
    for name in (
        "results.json",
        "junit.xml",
        "report.html",
        "report.pdf",
        "campaign.json",
        "target.json",
        "environment.json",
        "bundle.dsse.json",
    ):
        assert name in names, name
    assert {f"evidence/{case}/case.json" for case in CASES} <= names
    assert archive.read("report.pdf").startswith(b"%PDF-")
    envelope = json.loads(archive.read("bundle.dsse.json"))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "urn:kms-conformance:certification:1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert set(subjects) == names - {"bundle.dsse.json"}
    assert subjects["results.json"] == hashlib.sha256(archive.read("results.json")).hexdigest()
    predicate = statement["predicate"]
    assert predicate["certification"] is True and predicate["verdict"] == "Conformant"
    environment = json.loads(archive.read("environment.json"))
    tools = environment["tools"]
    assert tools["openssl"].startswith("OpenSSL") and tools["lxml"] and tools["cryptography"]
    assert tools["python"] == ".".join(map(str, sys.version_info[:3]))
    assert (
        len(environment["catalogue"]["sha256"]) == 64 and environment["catalogue"]["cases"] >= 120
    )
    target = json.loads(archive.read("target.json"))
    assert target["target"]["base_url"].startswith("https://127.0.0.1:")
    assert set(target["target"]) <= {
        "base_url",
        "verify_tls",
        "ca_file",
        "timeout_s",
        "target_file",
        "users",
        "label",
        "limits",  # the answer and evidence budgets (issue 13): settings, never secrets
    }


def test_verify_accepts_the_bundle_and_says_what_it_certifies(work: dict[str, Path]) -> None:
    done = cli("verify", str(work["bundle"]), "--pubkey", str(work["ec_pub"]))
    assert done.returncode == 0, done.stderr
    assert "verified: signed by ecdsa-p256-sha256 key sha256:" in done.stdout
    assert "Certification: the KMS at https://127.0.0.1:" in done.stdout
    assert "profile ts33180-r17" in done.stdout and "verdict: Conformant" in done.stdout


def test_ed25519_keys_sign_and_verify_and_a_wrong_key_fails(work: dict[str, Path]) -> None:
    out = work["base"] / "ed.zip"
    done = cli("bundle", str(work["good"]), "--key", str(work["ed_key"]), "-o", str(out))
    assert done.returncode == 0, done.stderr
    done = cli("verify", str(out), "--pubkey", str(work["ed_pub"]))
    assert done.returncode == 0 and "signed by ed25519 key" in done.stdout, done.stderr
    wrong = cli("verify", str(out), "--pubkey", str(work["ec_pub"]))
    assert wrong.returncode == 1 and "not signed by this key" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


def _regions(data: bytes) -> list[int]:
    """Every byte of every zip header and of the envelope, and a stride through the rest."""
    positions: set[int] = set(range(0, len(data), 211))
    data_end = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            start = info.header_offset
            name_len, extra_len = struct.unpack("<HH", data[start + 26 : start + 30])
            body = start + 30 + name_len + extra_len
            positions.update(range(start, body))  # the local header
            if info.filename == "bundle.dsse.json":
                positions.update(range(body, body + info.compress_size))
            data_end = max(data_end, body + info.compress_size)
    assert data[data_end : data_end + 4] == b"PK\x01\x02"
    positions.update(range(data_end, len(data)))  # the central directory and its end record
    return sorted(positions)


def test_one_changed_byte_anywhere_fails_verify(work: dict[str, Path]) -> None:
    data = work["bundle"].read_bytes()
    pubkey = work["base"] / "probe.pub"
    shutil.copyfile(work["ec_pub"], pubkey)
    target = work["base"] / "changed.zip"
    positions = _regions(data)
    assert len(positions) > 3000
    for position in positions:
        changed = bytearray(data)
        changed[position] ^= 0x01
        target.write_bytes(bytes(changed))
        with pytest.raises(bundle_mod.VerifyFailed):
            bundle_mod.verify_bundle(target, pubkey)
    # Through the CLI: exit 1 and one line why.
    changed = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("results.json")
    start = data.index(b'"schema": "kms-conformance/results/1"', info.header_offset)
    changed[start + 1] ^= 0x20  # "schema" -> "Schema", inside results.json
    target.write_bytes(bytes(changed))
    done = cli("verify", str(target), "--pubkey", str(work["ec_pub"]))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line == (
        f"kms-conformance verify: {target}: FAILED: not a valid zip: "
        "Bad CRC-32 for file 'results.json'"
    )


def _rezip(data: bytes, drop: str | None = None, add: tuple[str, bytes] | None = None) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = {n: archive.read(n) for n in archive.namelist() if n != drop}
    if add:
        entries[add[0]] = add[1]
    return bundle_mod.canonical_zip(entries.items())


def test_a_missing_extra_or_replaced_file_fails_verify(work: dict[str, Path]) -> None:
    data = work["bundle"].read_bytes()
    target = work["base"] / "edited.zip"
    for edited, reason in (
        (_rezip(data, drop="report.pdf"), "report.pdf: listed in the manifest but missing"),
        (_rezip(data, add=("notes.txt", b"x")), "notes.txt: in the bundle but not in the signed"),
        (
            _rezip(data, add=("results.json", b"{}\n")),
            "results.json: SHA-256 digest does not match the signed manifest",
        ),
    ):
        target.write_bytes(edited)
        done = cli("verify", str(target), "--pubkey", str(work["ec_pub"]))
        assert done.returncode == 1 and reason in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_run_with_an_unwaived_failure_cannot_be_bundled_as_a_certification(
    work: dict[str, Path],
) -> None:
    out = work["base"] / "failing.zip"
    done = cli("bundle", str(work["failing"]), "--key", str(work["ec_key"]), "-o", str(out))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "not a certification: 1 unwaived failure (CERT-UNKNOWN-001)" in line
    assert "--allow-incomplete" in line and not out.exists()
    done = cli(
        "bundle",
        str(work["failing"]),
        "--key",
        str(work["ec_key"]),
        "-o",
        str(out),
        "--allow-incomplete",
    )
    assert done.returncode == 0 and "NOT a certification" in done.stdout, done.stderr
    verified = cli("verify", str(out), "--pubkey", str(work["ec_pub"]))
    assert verified.returncode == 0, verified.stderr
    assert "NOT a certification: 1 unwaived failure (CERT-UNKNOWN-001)" in verified.stdout


def test_a_waived_failure_is_a_certification_that_names_the_waiver(work: dict[str, Path]) -> None:
    out = work["base"] / "waived.zip"
    done = cli("bundle", str(work["waived"]), "--key", str(work["ec_key"]), "-o", str(out))
    assert done.returncode == 0, done.stderr
    archive = zipfile.ZipFile(out)
    assert archive.read("waivers.toml").decode() == WAIVER
    statement = json.loads(
        base64.b64decode(json.loads(archive.read("bundle.dsse.json"))["payload"])
    )
    predicate = statement["predicate"]
    assert predicate["certification"] is True
    assert predicate["verdict"] == "Conformant with 1 waived deviation"
    assert predicate["waivers"][0]["status"] == "applied"


def test_selected_cases_that_did_not_run_block_a_certification(work: dict[str, Path]) -> None:
    copy = work["base"] / "partial"
    shutil.copytree(work["good"], copy)
    campaign = json.loads((copy / "campaign.json").read_text())
    campaign["selected"].append("KEYPROV-UID-001")
    (copy / "campaign.json").write_text(json.dumps(campaign))
    done = cli("bundle", str(copy), "--key", str(work["ec_key"]), "-o", str(copy / "b.zip"))
    assert done.returncode == 1
    assert "1 selected case(s) did not run (KEYPROV-UID-001)" in done.stderr


def test_bad_keys_are_exit_2_with_one_line(work: dict[str, Path]) -> None:
    rsa_key, _ = _write_key(work["base"] / "rsa", rsa.generate_private_key(65537, 2048))
    not_a_key = work["base"] / "nokey.pem"
    not_a_key.write_text("hello\n")
    for key, reason in (
        (rsa_key, "must be ECDSA P-256 or Ed25519"),
        (not_a_key, "not a PEM private key"),
        (work["base"] / "absent.pem", "key file not found"),
    ):
        done = cli(
            "bundle", str(work["good"]), "--key", str(key), "-o", str(work["base"] / "x.zip")
        )
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert str(key) in line and reason in line


def _recipe() -> tuple[str, list[str]]:
    text = (ROOT / "docs" / "BUNDLE.md").read_text()
    [script] = re.findall(r"```python\n(.*?)```", text, re.S)
    [shell] = re.findall(r"```sh\n(.*?)```", text, re.S)
    return script, [line.split("#")[0].strip() for line in shell.splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["ec", "ed"])
def test_the_documented_openssl_recipe_verifies_a_bundle(work: dict[str, Path], kind: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH")
    here = work["base"] / f"recipe-{kind}"
    here.mkdir()
    bundle = here / "bundle.zip"
    done = cli("bundle", str(work["good"]), "--key", str(work[f"{kind}_key"]), "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    shutil.copyfile(work[f"{kind}_pub"], here / "lab.pub")
    script, commands = _recipe()
    (here / "check_bundle.py").write_text(script)
    checked = subprocess.run(
        commands[0].split(), cwd=here, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("digests OK: Certification: the KMS at")
    command = commands[1] if kind == "ec" else commands[2]
    assert command.startswith("openssl ")
    verified = subprocess.run(command.split(), cwd=here, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Verified" in verified.stdout + verified.stderr
    # The same recipe rejects a changed envelope signature.
    sig = bytearray((here / "sig.bin").read_bytes())
    sig[-1] ^= 0x01
    (here / "sig.bin").write_bytes(bytes(sig))
    rejected = subprocess.run(command.split(), cwd=here, capture_output=True, text=True, timeout=60)
    assert rejected.returncode != 0
