"""Named checks, one small function each, mirroring TS 33.180 Annex D.

Importing this package registers every check in ``REGISTRY``, each with the REQ ids,
clause and strength ``checks.toml`` gives it; a check missing from that table, or a line of
the table whose check no module defines, fails the import.
"""

from conformance.checks import (  # importing registers their checks
    certchange,
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
    require_every_check_defined,
    run_check,
)

require_every_check_defined()

__all__ = [
    "REGISTRY",
    "CheckContext",
    "CheckSpec",
    "Finding",
    "HarnessError",
    "HttpFacts",
    "certchange",
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
