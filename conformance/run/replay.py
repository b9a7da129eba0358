"""``kms-conformance replay DIR CASE-ID``: send a case's recorded requests again.

The recorded method, path and body bytes of every step (from ``DIR/evidence/<id>/``) go
to the target (``--target``, else the target file the run recorded), with a fresh token
of the recorded variant from that target file (tokens are never in evidence); the case's
checks then run on the new answers and the verdict is printed. A recorded KmsRequest
keeps its old Time, so a KMS that checks freshness may now refuse it: replay says so.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from conformance.catalogue.cases import CaseFileError, load_catalogue
from conformance.core.exchange import Exchange
from conformance.probe.sender import MissingInput
from conformance.profiles import ProfileError, get_profile
from conformance.report.redact import holds_marker
from conformance.run.engine import Runner
from conformance.target.file import TargetFileError, load_target
from conformance.verdicts.outcomes import Outcome, Verdict

_EXIT = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.ERROR: 2, Verdict.NA: 2, Verdict.INCONC: 3}


class ReplayProblem(Exception):
    pass


def main(
    directory: str,
    case_id: str,
    target_file: str | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    try:
        return _replay(Path(directory), case_id.upper(), target_file, out)
    except (ReplayProblem, CaseFileError, TargetFileError, ProfileError) as exc:
        print(f"kms-conformance replay: {exc}", file=err)
        return 2


def _replay(directory: Path, case_id: str, target_file: str | None, out: TextIO) -> int:
    record = _read_json(directory / "evidence" / _safe(case_id) / "case.json")
    cases = {c.id: c for c in load_catalogue()}
    case = cases.get(case_id)
    if case is None:
        raise ReplayProblem(f"case {case_id} is not in the catalogue any more")
    if any(step.request == "control" for step in case.steps):
        raise ReplayProblem(
            f"{case_id} has control steps (the target changes its own state, "
            "conformance/run/control.py); replay re-sends HTTP requests only: run the case again"
        )
    steps = record.get("steps")
    if not isinstance(steps, list) or len(steps) != len(case.steps):
        raise ReplayProblem(f"{directory}: the evidence of {case_id} does not match its steps")
    target_path = Path(target_file) if target_file else _recorded_target(directory)
    target = load_target(target_path)
    runner = Runner(target, get_profile(target.profile.release))
    evidence = directory / "evidence" / _safe(case_id)
    by_label = {str(s.get("label")): s for s in steps}

    def send(spec: Mapping[str, Any], label: str) -> Exchange:
        recorded = by_label.get(label)
        if recorded is None:
            raise ReplayProblem(f"no recorded step {label!r} for {case_id}")
        url = str(recorded.get("url", ""))
        path = "/" + url.split("://", 1)[-1].split("/", 1)[-1] if "://" in url else url
        body_file = evidence / str(recorded.get("dir", "")) / "request.body"
        body = body_file.read_bytes() if body_file.is_file() else b""
        facts = (recorded.get("bodies") or {}).get("request") or {}
        if facts.get("written", 0) < facts.get("size", 0):
            raise ReplayProblem(
                f"the recorded body of {label} was cut by limits.max_evidence_bytes "
                f"({facts.get('written')} of {facts.get('size')} octets kept)"
            )
        if holds_marker(body) or b"<redacted " in body:  # also older evidence
            raise ReplayProblem(f"the recorded body of {label} held a secret (redacted)")
        return runner.probe.resend(
            label,
            method=str(recorded.get("method", "POST")),
            path=path,
            body=body,
            token_variant=str(recorded.get("token_variant", "valid")),
            user=int(spec.get("user", 1)),
            scheme=url.split("://", 1)[0] if "://" in url else "https",
        )

    try:
        result = runner.run_case(case, sender=send)
    except MissingInput as exc:
        raise ReplayProblem(str(exc)) from None
    finally:
        runner.close()
    print(f"{case.id}: {case.title}", file=out)
    print(
        f"  replayed {len(result.steps)} recorded request(s) against {target.target.base_url}",
        file=out,
    )
    for check in result.checks:
        mark = {"ok": "ok  ", "violation": "FAIL", "warning": "warn", "skipped": "skip"}
        print(f"  {mark[Outcome(check.outcome).value]} {check.name:32} {check.message}", file=out)
    if any(
        b"<Time>" in s.exchange.request.body or b":Time>" in s.exchange.request.body
        for s in result.steps
    ):
        print(
            "  note: the recorded KmsRequest keeps its original Time; a KMS that checks "
            "freshness may refuse it now",
            file=out,
        )
    was = record.get("verdict")
    print(
        f"verdict: {result.verdict.value} (recorded: {was})"
        + (f" - {result.reason}" if result.reason else ""),
        file=out,
    )
    return _EXIT[result.verdict]


def _recorded_target(directory: Path) -> Path:
    results = _read_json(directory / "results.json")
    recorded = (results.get("target") or {}).get("target_file")
    if not recorded:
        raise ReplayProblem(f"{directory}/results.json names no target file; give --target")
    path = Path(str(recorded))
    if not path.is_file():
        raise ReplayProblem(
            f"the recorded target file {path} no longer exists (an embedded KMS is gone "
            "after its run); give --target"
        )
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayProblem(
            f"{path}: not found (is DIR a kms-conformance output folder?)"
        ) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReplayProblem(f"{path}: unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ReplayProblem(f"{path}: not a JSON object")
    return data


def _safe(case_id: str) -> str:
    if not case_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ReplayProblem(f"{case_id!r} is not a case id")
    return case_id
