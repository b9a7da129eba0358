"""``python -m refkms serve|faults``: the command line of DESIGN.md section 5."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from refkms_testkit import REPO, kms_response, parse, schema_for, text

from conformance.crypto import eccsi, sakke
from conformance.crypto.uid import decode_user_id


def test_serve_writes_a_complete_target_file_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = subprocess.Popen(
        [sys.executable, "-m", "refkms", "serve", "--port", "0", "--state", str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        target = _wait_for_target(state / "target.toml", server)
        _assert_target_shape(target)
        context = ssl.create_default_context(cafile=target["target"]["ca_file"])
        with httpx.Client(verify=context, timeout=30) as client:
            base, token = target["target"]["base_url"], target["users"][0]["token"]
            headers = {"Authorization": f"Bearer {token}"}
            init = client.post(f"{base}/init", headers=headers)
            keyprov = client.post(f"{base}/keyprov", headers=headers)
        for response in (init, keyprov):
            assert response.status_code == 200
            schema_for("ts33180-r17").validate(parse(response))
        certificate = kms_response(parse(init)).find(".//{*}KmsCertificate")
        key_set = kms_response(parse(keyprov)).find(".//{*}KmsKeySet")
        assert certificate is not None and key_set is not None
        z, kpak = (bytes.fromhex(text(certificate, f"k:{n}")) for n in ("PubEncKey", "PubAuthKey"))
        uid = decode_user_id(text(key_set, "k:UserID"))
        rsk, ssk, pvt = (
            bytes.fromhex(text(key_set, f"k:{n}"))
            for n in ("UserDecryptKey", "UserSigningKeySSK", "UserPubTokenPVT")
        )
        assert eccsi.validate_signing_keys(kpak, uid, ssk, pvt)
        assert sakke.validate_rsk(z, uid, rsk)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=20)
    assert server.returncode == 0
    assert "POST /keymanagement/identity/v1/keyprov 200" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("flag", "value", "listed"),
    [
        ("--fault", "no-such-fault", "envelope-wrong-namespace"),
        ("--profile", "ts33180-r99", "ts33180-r17"),
    ],
)
def test_unknown_names_exit_2_listing_the_known_ones(
    tmp_path: Path, flag: str, value: str, listed: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "refkms", "serve", "--state", str(tmp_path), flag, value],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert value in done.stderr and listed in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_faults_lists_every_fault_as_text() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "refkms", "faults"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "uid-ascii-hex" in done.stdout and "REQ-100" in done.stdout


def _wait_for_target(path: Path, server: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while not path.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            _, stderr = server.communicate()
            raise AssertionError(f"no target file; the server said: {stderr}")
        time.sleep(0.05)
    return tomllib.loads(path.read_text())


def _assert_target_shape(target: dict[str, object]) -> None:
    for table in ("target", "profile", "pics", "pixit", "users", "keys", "tokens", "clock"):
        assert table in target, table
    users = target["users"]
    assert isinstance(users, list) and len(users) >= 3
    assert "ink" in users[0] and "ink" not in users[2]
    assert set(target["tokens"]) >= {"expired", "wrong_scope", "malformed", "bad_signature"}  # type: ignore[arg-type]
    assert target["keys"]["trk_id"] == users[0]["trk_id"]  # type: ignore[index]
    assert target["target"]["base_url"].startswith("https://127.0.0.1:")  # type: ignore[index]


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "kms.toml"
    config.write_text('[protection]\nencryption = "everything"\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "refkms",
            "serve",
            "--state",
            str(tmp_path),
            "--config",
            str(config),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "encryption" in done.stderr and "everything" in done.stderr
