"""The fault catalogue of the reference KMS (issue 3 item 6).

Each fault makes the reference KMS answer in one realistic, non-conformant way, so that the
harness can prove each of its checks fails when it should. A fault names the REQ ids of
``spec/requirements.md`` it violates, the harness case ids that must catch it, and the hook
in the application where it acts. Case ids are provisional (``AREA-TOPIC-NNN``) until the
case catalogue is written; they are reconciled then. The entries themselves are data in
refkms/fault_catalogue.py; the rotation faults come from refkms/rotation_faults.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from refkms.fault_catalogue import (
    CATALOGUE,
    HOOK_ACCESS,
    HOOK_CERTIFICATE,
    HOOK_ENVELOPE,
    HOOK_ERRORS,
    HOOK_KEYS,
    HOOK_KEYSET,
    HOOK_PROTECTION,
    HOOK_REQUEST,
    HOOK_RESOURCES,
    HOOK_RESPONSE,
    HOOK_ROOT_KEYS,
    HOOK_ROUTING,
    HOOK_TRANSPORT,
    Fault,
)
from refkms.rotation_faults import EMBEDDED_CONFIG, ROTATION_FAULTS

__all__ = [
    "EMBEDDED_CONFIG",
    "FAULTS",
    "HOOK_ACCESS",
    "HOOK_CERTIFICATE",
    "HOOK_ENVELOPE",
    "HOOK_ERRORS",
    "HOOK_KEYS",
    "HOOK_KEYSET",
    "HOOK_PROTECTION",
    "HOOK_REQUEST",
    "HOOK_RESOURCES",
    "HOOK_RESPONSE",
    "HOOK_ROOT_KEYS",
    "HOOK_ROUTING",
    "HOOK_TRANSPORT",
    "WARNING_ONLY",
    "ActiveFaults",
    "Fault",
    "catalogue_json",
    "catalogue_text",
    "detection",
    "embedded_config",
    "fault_names",
    "get_fault",
]

FAULTS: tuple[Fault, ...] = (
    *CATALOGUE,
    # Stateful UE scenarios: TrK/InK rotation and key periods (refkms/rotation_faults.py)
    *(
        Fault(
            *entry,
            protection=tuple(EMBEDDED_CONFIG.get(entry[0], {}).get("protection", {}).items()),
            settings=tuple(
                (key, value)
                for key, value in EMBEDDED_CONFIG.get(entry[0], {}).items()
                if key != "protection"
            ),
        )
        for entry in ROTATION_FAULTS
    ),
)

_BY_NAME = {fault.name: fault for fault in FAULTS}


def embedded_config(name: str) -> dict[str, Any]:
    """The refkms configuration fault ``name`` needs ({} for the default one)."""
    return _BY_NAME[name].embedded_config()


# Faults that break only should-strength or inferred rules: DESIGN.md section 3 makes
# their cases warn, not fail, so a run against such a KMS exits 0 unless it is --strict
# (run --embedded-fault is a self-test and always folds strictly).
# The fault matrix (tests/test_fault_matrix.py) holds every other fault to a failing case.
WARNING_ONLY = frozenset(
    {
        "auth-bad-signature-accepted",
        "auth-expired-token-accepted",
        "auth-no-token-accepted",
        "auth-wrong-scope-accepted",
        "authz-other-users-keys-served",
        "cert-not-stable",
        "cert-revoked",
        "cert-role-external-in-init",
        "cert-validto-past",
        "certcache-cachenum-regresses",
        "certcache-partner-role-root",
        "keys-wrapped-wrong-key",
        "keyset-revoked",
        "keyset-validity-wrong-period",
        "kms-cert-certcache-old",
        "lookup-wrong-kms-uri",
        "method-get-served",
        "no-cache-control",
        "period-off-by-one",
        "period-unix-epoch",
        "redirect-answered-with-kmsmessage",
        "request-bad-signature-accepted",
        "request-stale-time-accepted",
        "request-useruri-not-checked",
        "rotation-old-trk-id-answered-with-new",
        "sig-not-covering-message",
        "unknown-path-served",
    }
)


def detection(fault: Fault) -> str:
    """How the harness reports the fault: "fail", or "warning" (a failure with --strict)."""
    return "warning" if fault.name in WARNING_ONLY else "fail"


def fault_names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def get_fault(name: str) -> Fault:
    """The catalogue entry for ``name``; ``KeyError`` when there is none."""
    return _BY_NAME[name]


def catalogue_json() -> str:
    return json.dumps(
        [
            {
                **{k: v for k, v in asdict(fault).items() if k != "settings"},
                "protection": dict(fault.protection),
                "embedded_config": fault.embedded_config(),
                "detection": detection(fault),
            }
            for fault in FAULTS
        ],
        indent=2,
    )


def catalogue_text() -> str:
    width = max(len(fault.name) for fault in FAULTS)
    lines = [
        f"{fault.name:<{width}}  {fault.description}  [{', '.join(fault.reqs)}]"
        f"  caught by {', '.join(fault.cases)}"
        + ("  (as a warning)" if fault.name in WARNING_ONLY else "")
        for fault in FAULTS
    ]
    return "\n".join(lines)


class ActiveFaults:
    """The faults switched on for one server; asking about an unknown name is a bug."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        unknown = [name for name in names if name not in _BY_NAME]
        if unknown:
            raise KeyError(unknown[0])
        self._names = frozenset(names)

    def on(self, name: str) -> bool:
        if name not in _BY_NAME:
            raise KeyError(f"no fault named {name!r} in the catalogue")
        return name in self._names

    @property
    def names(self) -> frozenset[str]:
        return self._names
