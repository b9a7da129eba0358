"""The reference KMS over loopback HTTPS, described by the target.toml it writes for itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.target.file import Target, load_target
from refkms.config import config_from_mapping
from refkms.domain import Domain
from refkms.faults import ActiveFaults
from refkms.profiles import PROFILES
from refkms.server import running_in_thread
from refkms.state import StateDir
from refkms.target import target_description, write_target


@dataclass
class ServedKms:
    domain: Domain
    target: Target
    target_file: Path
    state: StateDir


@contextmanager
def serving_kms(
    directory: Path, config: dict[str, Any] | None = None, profile: str = "ts33180-r17"
) -> Iterator[ServedKms]:
    """A reference KMS with its default domain (alice with an InK, bob, carol TrK only)."""
    state = StateDir(directory)
    domain = Domain(config_from_mapping(config or {}), PROFILES[profile], ActiveFaults(()), state)
    tls = state.tls()
    with running_in_thread(domain, tls) as listening:
        write_target(state.target_file, target_description(domain, listening.base_url, tls.ca_file))
        yield ServedKms(domain, load_target(state.target_file), state.target_file, state)
