"""Module-scoped reference KMS servers over HTTPS (see refkms_testkit)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from refkms_testkit import REPO, RunningKms, make_domain, serving

from refkms.state import StateDir


@pytest.fixture(scope="session")
def state(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    return StateDir(tmp_path_factory.mktemp("refkms-state"))


@pytest.fixture(scope="module")
def r17(state: StateDir) -> Iterator[RunningKms]:
    with serving(make_domain(state), state) as kms:
        yield kms


@pytest.fixture(scope="module")
def r16(state: StateDir) -> Iterator[RunningKms]:
    with serving(make_domain(state, "ts33180-r16"), state) as kms:
        yield kms


@pytest.fixture(scope="session")
def keyset_18_1() -> dict[str, str]:
    vectors = json.loads((REPO / "tests/vectors/keysets.json").read_text())
    (entry,) = [k for k in vectors["keysets"] if k["name"] == "annex-f-example-rfc-masters"]
    return {key: str(value).lower() for key, value in entry.items()}
