"""Many virtual UEs for ``kms-conformance load``: ``serve --users N`` (DESIGN.md 4, issue 16).

The reference KMS provisions ``sip:ue1@example.org`` .. ``sip:ueN@example.org`` besides its
configured users. target.toml keeps its ``[[users]]`` as before and describes the UEs with
a ``[user_pattern]`` whose tokens and keys sit in ``load-users.jsonl`` beside it (one JSON
object per UE), so a load run of thousands of UEs reads one file instead of running a token
command per UE. The keys are generated in the state directory like every user's.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from refkms.config import ConfigError, KmsConfig, UserConfig
from refkms.domain import Domain
from refkms.files import write_atomically
from refkms.profiles import TOKEN_SCOPE

URI_PATTERN = "sip:ue{index}@example.org"
USERS_FILE = "load-users.jsonl"
MAX_LOAD_USERS = 100_000


def with_load_users(config: KmsConfig, count: int) -> KmsConfig:
    """``config`` with ``count`` pattern UEs appended to its users (each with an InK)."""
    if not 0 <= count <= MAX_LOAD_USERS:
        raise ConfigError(f"--users: expected 0..{MAX_LOAD_USERS}, got {count}")
    taken = {user.uri for user in config.users}
    extra = []
    for index in range(1, count + 1):
        uri = URI_PATTERN.format(index=index)
        if uri in taken:
            raise ConfigError(f"--users: {uri} is already a configured user")
        extra.append(UserConfig(uri, f"trk.1.ue{index}".encode(), f"ink.1.ue{index}".encode()))
    return replace(config, users=config.users + tuple(extra), load_users=count)


def add_user_pattern(description: dict[str, Any], domain: Domain, directory: Path) -> None:
    """Move the pattern UEs out of ``[[users]]`` into ``[user_pattern]`` + load-users.jsonl."""
    count = domain.config.load_users
    if not count:
        return
    pattern_uris = {URI_PATTERN.format(index=i) for i in range(1, count + 1)}
    description["users"] = [u for u in description["users"] if u["uri"] not in pattern_uris]
    lines = []
    for index in range(1, count + 1):
        user = domain.users[URI_PATTERN.format(index=index)]
        entry: dict[str, Any] = {
            "index": index,
            "token": domain.tokens.mint(user.uri, TOKEN_SCOPE),
            "trk_id": _b64(user.trk_id),
            "trk": user.trk.hex(),
        }
        if user.ink is not None and user.ink_id is not None:
            entry |= {"ink_id": _b64(user.ink_id), "ink": user.ink.hex()}
        lines.append(json.dumps(entry, separators=(",", ":")))
    write_atomically(directory / USERS_FILE, ("\n".join(lines) + "\n").encode("ascii"))
    description["user_pattern"] = {"uri": URI_PATTERN, "count": count, "users_file": USERS_FILE}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
