"""Named checks, one small function each, mirroring TS 33.180 Annex D.

Importing this package registers every check in ``REGISTRY``.
"""

from conformance.checks import (  # importing registers their checks
    certificate,
    consistency,
    envelope,
    errors,
    keyset,
    lookup,
    security,
    state,
    transport,
)
from conformance.checks.base import (
    REGISTRY,
    CheckContext,
    CheckSpec,
    Finding,
    HarnessError,
    HttpFacts,
    check,
    run_check,
)

__all__ = [
    "REGISTRY",
    "CheckContext",
    "CheckSpec",
    "Finding",
    "HarnessError",
    "HttpFacts",
    "certificate",
    "check",
    "consistency",
    "envelope",
    "errors",
    "keyset",
    "lookup",
    "run_check",
    "security",
    "state",
    "transport",
]
