"""``kms-conformance explain ID``: what a case sends, what it checks and why (DESIGN.md 5).

Moved out of conformance/run/runcmd.py so that neither grows past the layout's 600 lines.
"""

from __future__ import annotations

import sys
from typing import TextIO

from conformance.catalogue.cases import CaseFileError, load_catalogue
from conformance.catalogue.requirements import load_requirements
from conformance.checks import REGISTRY

EXIT_OK, EXIT_CONFIG = 0, 2


def explain(case_id: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from conformance.run.control import control_explained

    try:
        cases = {c.id: c for c in load_catalogue()}
        requirements = {r.id: r for r in load_requirements()}
    except CaseFileError as exc:
        print(f"kms-conformance explain: {exc}", file=err)
        return EXIT_CONFIG
    case = cases.get(case_id.upper())
    if case is None:
        print(f"kms-conformance explain: no case {case_id!r} (see kms-conformance list)", file=err)
        return EXIT_CONFIG
    print(f"{case.id}: {case.title}", file=out)
    print(
        f"  area {case.area}, clause {case.clause}, strength {case.strength}"
        f"{' (inferred: violations are warnings)' if case.inferred else ''}",
        file=out,
    )
    print(
        f"  applies when: {case.pics}" + (f"; needs {', '.join(case.needs)}" if case.needs else ""),
        file=out,
    )
    if case.purpose:
        print(f"  why: {case.purpose}", file=out)
    print("  requirements:", file=out)
    for req in case.reqs:
        info = requirements.get(req)
        print(
            f"    {req} ({info.clause}, {info.strength}): {info.title}" if info else f"    {req}",
            file=out,
        )
    for number, step in enumerate(case.steps, start=1):
        spec = step.spec
        if step.request == "control":
            print(f"  step {number} ({step.label}): {control_explained(spec)}", file=out)
            continue
        params = ", ".join(
            f"{k}={spec[k]}"
            for k in ("user", "uri", "time", "number", "method", "path", "scheme", "fields")
            if k in spec
        )
        print(
            f"  step {number} ({step.label}): {spec.get('method', 'POST')} {step.request}"
            f"{' ' + params if params else ''}; token {spec.get('token', 'valid')}, "
            f"body {spec.get('body', 'none')}",
            file=out,
        )
        message = f", message {step.expect_message}" if step.expect_message else ""
        print(f"    expects: HTTP {step.status_text}{message}", file=out)
        if step.delivers:
            names = " and ".join(
                f"a new {k.replace('trk', 'TrK').replace('ink', 'InK')}" for k in step.delivers
            )
            print(
                f"    delivers: {names} the later steps need (none the UE can adopt: "
                "inconc, as the KMS may deliver)",
                file=out,
            )
        for name in step.checks:
            spec_ = REGISTRY[name]
            print(
                f"    checks {name} [{', '.join(spec_.reqs)}; {spec_.clause}; {spec_.strength}"
                f"{', inferred' if spec_.inferred else ''}]: {spec_.summary}",
                file=out,
            )
    if len(case.steps) > 1 or any(step.delivers for step in case.steps):
        print(f"  {UE_MODEL}", file=out)
    print(f"  defined in {case.file.name}:{case.line}", file=out)
    return EXIT_OK


# How the harness models the UE (conformance/protection/uestate.py), for `explain`.
UE_MODEL = (
    "UE key state: every step is sent and judged with the TrK/InK the UE holds then, "
    "starting from the target file; a NewTransportKey/NewIntegrityKey replaces them only "
    "when its response decrypts and verifies and it unwraps under the TrK held; the "
    "delivering response itself is judged with the keys held before it (profile setting "
    "delivering_response_keys, default 'held'). Reports show key IDs and SHA-256 "
    "fingerprints, never values."
)
