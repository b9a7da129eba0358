"""Replacing the reference KMS's own certificate during a run (issue 12, PICS
``kms_cert_rotation``).

``python -m refkms kms-cert --state DIR replace|restore`` writes ``DIR/kms-cert-generation``
(1 after ``replace``, 0 after ``restore``); a server started with ``serve --cert-rotation``
(or config ``kms_cert_rotation = true``) reads it on every request and answers with the
certificate and key sets of that generation: generation 1 has master secrets of its own
(kept in ``DIR/replacement-secrets.json``), so a new PubEncKey and PubAuthKey, and the same
KmsUri and CertUri (a UE replaces the stored certificate of that CertUri). ``restore`` puts
the original back, so a run's later cases meet the certificate the run started with. The
command prints one line and takes no secret.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from refkms.files import write_atomically
from refkms.state import MasterSecrets, _master

GENERATION_FILE = "kms-cert-generation"
SECRETS_FILE = "replacement-secrets.json"
ACTIONS = {"replace": 1, "restore": 0}


def generation(state_path: Path) -> int:
    """The certificate generation in force: 0 (the original) unless ``replace`` ran."""
    try:
        text = (state_path / GENERATION_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return 0
    return 1 if text == "1" else 0


def replacement_master(state_path: Path) -> MasterSecrets:
    """The master secrets of the replacement certificate, made once and kept."""
    path = state_path / SECRETS_FILE
    stored: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    master = _master(stored)
    write_atomically(path, json.dumps(stored, indent=2, sort_keys=True).encode())
    return master


def command(state_path: Path) -> str:
    """The target file's ``[pixit] kms_cert_rotation_command`` for this state directory."""
    return (
        f"{shlex.quote(sys.executable)} -m refkms kms-cert "
        f"--state {shlex.quote(str(state_path.resolve()))}"
    )


def main(state: str, action: str) -> int:
    path = Path(state)
    if not path.is_dir():
        print(f"refkms kms-cert: {state}: not a state directory", file=sys.stderr)
        return 2
    replacement_master(path)  # before the switch, so a server never reads half a state
    write_atomically(path / GENERATION_FILE, f"{ACTIONS[action]}\n".encode("ascii"))
    which = "the replacement" if ACTIONS[action] else "the original"
    print(f"refkms: the KMS now serves {which} certificate (generation {ACTIONS[action]})")
    return 0
