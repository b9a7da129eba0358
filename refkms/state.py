"""The state directory: master secrets, TrK/InK values, token-signing key and TLS files.

Everything the KMS generates is made once and kept here, so that a restarted server with
the same ``--state`` issues the same certificates and accepts the same tokens.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conformance.crypto import eccsi, sakke
from refkms.config import KmsConfig, UserConfig
from refkms.files import write_atomically
from refkms.tls import TlsFiles, ensure_tls_files

# RFC 6507 Appendix A KSAK and RFC 6508 Appendix A z (kms-interface.md section 18.1).
KAT_KSAK = 0x12345
KAT_Z_MASTER = 0xAFF429D35F84B110D094803B3595A6E2998BC99F

TRK_LENGTH = 16  # AES-128-GCM message encryption (DESIGN.md section 7)
INK_LENGTH = 32  # HMAC-SHA256 with a 256-bit key (D.1)


@dataclass(frozen=True)
class MasterSecrets:
    ksak: int
    z_master: int


@dataclass(frozen=True)
class UserKeys:
    """The symmetric keys a user shares with the KMS, and the ones a rotation delivers."""

    trk: bytes
    ink: bytes | None
    next_trk: bytes
    next_ink: bytes | None


@dataclass(frozen=True)
class DomainSecrets:
    own: MasterSecrets
    partners: dict[str, MasterSecrets]
    users: dict[str, UserKeys]


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def target_file(self) -> Path:
        return self.path / "target.toml"

    def tls(self) -> TlsFiles:
        return ensure_tls_files(self.path / "tls")

    def token_key(self) -> ec.EllipticCurvePrivateKey:
        """The ES256 key that signs (and so verifies) the access tokens."""
        path = self.path / "token-signing-key.pem"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return key
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomically(path, pem)
        return key

    def domain_secrets(self, config: KmsConfig) -> DomainSecrets:
        """Load the stored secrets, add what ``config`` needs and is missing, store them."""
        path = self.path / "secrets.json"
        stored: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        own = _master(stored.setdefault("own", {}))
        partners = {
            partner.kms_uri: _master(
                stored.setdefault("partners", {}).setdefault(partner.kms_uri, {})
            )
            for partner in config.partners
        }
        users = {
            user.uri: _user_keys(stored.setdefault("users", {}).setdefault(user.uri, {}), user)
            for user in config.users
        }
        write_atomically(path, json.dumps(stored, indent=2, sort_keys=True).encode())
        if config.kat:
            own = MasterSecrets(KAT_KSAK, KAT_Z_MASTER)
        return DomainSecrets(own, partners, users)


def _master(entry: dict[str, Any]) -> MasterSecrets:
    ksak = entry.setdefault("ksak", f"{1 + secrets.randbelow(eccsi.Q - 1):x}")
    z_master = entry.setdefault("z_master", f"{2 + secrets.randbelow(sakke.Q - 2):x}")
    return MasterSecrets(int(ksak, 16), int(z_master, 16))


def _user_keys(entry: dict[str, Any], user: UserConfig) -> UserKeys:
    def stored_or_new(name: str, length: int, configured: bytes | None) -> bytes:
        if configured is not None:
            return configured
        return bytes.fromhex(entry.setdefault(name, secrets.token_hex(length)))

    has_ink = user.ink_id is not None
    return UserKeys(
        trk=stored_or_new("trk", TRK_LENGTH, user.trk),
        ink=stored_or_new("ink", INK_LENGTH, user.ink) if has_ink else None,
        next_trk=stored_or_new("next_trk", TRK_LENGTH, None),
        next_ink=stored_or_new("next_ink", INK_LENGTH, None) if has_ink else None,
    )
