"""Waivers: known deviations a lab or vendor accepts for a while (``run --waivers FILE``).

A waiver file is TOML with one ``[[waiver]]`` table per known deviation::

    [[waiver]]
    case = "KEYPROV-UID-*"          # a case id or a glob over case ids (required)
    reason = "UID derivation fixed in 4.2"   # required
    tracking = "VENDOR-1234"        # optional: an issue or ticket reference
    expires = 2027-06-30            # required: a TOML date; the waiver applies up to that day
    pics = "cert and lookup"        # optional: applies only when this PICS expression holds
    profile = "ts33180-r17"         # optional: applies only to runs of this profile

The expiry date is required so that no waiver lives for ever: after it, the waiver no
longer applies and every report says so. The first waiver in file order that matches a
case, is in force and whose condition holds decides the case:

- a case that fails is ``fail (waived)``: its verdict stays ``fail`` (outside scripts keep
  working) and it does not fail the run;
- a case that passes is an *unexpected pass* and fails the run, as in the OpenID
  Foundation's conformance suite, so that stale waivers get removed;
- ``inconc``, ``error`` and ``n/a`` are not covered by a waiver: they stay what they are.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from conformance.catalogue.cases import CaseFileError, compile_pics, pics_applies
from conformance.verdicts.outcomes import Verdict
from conformance.verdicts.results import CaseResult, RunResult

KEYS = frozenset({"case", "reason", "tracking", "expires", "pics", "profile"})

# What a waiver did in a run (the "status" of a waiver in results.json).
APPLIED = "applied"  # waived at least one failing case
UNEXPECTED_PASS = "unexpected pass"  # a case it covers passed: the run fails
EXPIRED = "expired"  # matched a case but no longer applies
CONDITION_FALSE = "condition false"  # the PICS or profile condition does not hold
UNUSED = "unused"  # in force but matched no failing or passing case


class WaiverFileError(ValueError):
    """A waiver file that cannot be used: one line naming the file and the key."""


@dataclass(frozen=True)
class Waiver:
    case: str
    reason: str
    expires: date
    tracking: str = ""
    pics: str = ""
    profile: str = ""
    index: int = 0  # position in the file, from 1

    def matches(self, case_id: str) -> bool:
        return fnmatch.fnmatchcase(case_id, self.case.upper())

    def expired(self, on: date) -> bool:
        return on > self.expires

    def condition(self) -> str:
        parts = [f"PICS {self.pics}"] if self.pics else []
        parts += [f"profile {self.profile}"] if self.profile else []
        return " and ".join(parts)

    def holds(self, profile: str, pics: dict[str, Any]) -> bool:
        if self.profile and self.profile != profile:
            return False
        return not self.pics or pics_applies(self.pics, {**pics, "release": profile})

    def describe(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "reason": self.reason,
            "tracking": self.tracking,
            "expires": self.expires.isoformat(),
            "condition": self.condition(),
        }


def load_waivers(path: Path) -> list[Waiver]:
    """Read and validate a waiver file; ``WaiverFileError`` names the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WaiverFileError(f"{path}: waiver file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WaiverFileError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise WaiverFileError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"waiver"})
    if unknown:
        raise WaiverFileError(f"{path}: {unknown[0]}: unknown key (expected [[waiver]] tables)")
    entries = data.get("waiver", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise WaiverFileError(f"{path}: waiver: must be [[waiver]] tables")
    return [_waiver(path, n, entry) for n, entry in enumerate(entries, start=1)]


def _waiver(path: Path, index: int, entry: dict[str, Any]) -> Waiver:
    where = f"{path}: waiver[{index}]"
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        known = ", ".join(sorted(KEYS))
        raise WaiverFileError(f"{where}.{unknown[0]}: unknown key (known: {known})")
    for key in ("case", "reason"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            raise WaiverFileError(f"{where}.{key}: required, a non-empty string")
    for key in ("tracking", "pics", "profile"):
        if key in entry and not isinstance(entry[key], str):
            raise WaiverFileError(f"{where}.{key}: must be a string")
    expires = entry.get("expires")
    if isinstance(expires, datetime) or not isinstance(expires, date):
        raise WaiverFileError(
            f"{where}.expires: required, a TOML date such as 2027-06-30 (not a string or time)"
        )
    pics = entry.get("pics", "").strip()
    if pics:
        try:
            compile_pics(pics)
        except CaseFileError as exc:
            raise WaiverFileError(f"{where}.pics: {exc}") from None
    return Waiver(
        case=entry["case"].strip(),
        reason=" ".join(entry["reason"].split()),
        expires=expires,
        tracking=entry.get("tracking", "").strip(),
        pics=pics,
        profile=entry.get("profile", "").strip(),
        index=index,
    )


def apply_waivers(run: RunResult, waivers: list[Waiver], source: str = "") -> None:
    """Mark the cases of ``run`` the waivers cover and record what each waiver did.

    Sets ``case.waiver`` (the waiver and its status for that case) and ``case.waived`` on
    the cases, and ``run.waivers`` (every waiver with its status and the cases it touched).
    The run's date decides expiry, so a report read later says what held on that day.
    """
    on = run.started.date()
    touched: dict[int, list[str]] = {w.index: [] for w in waivers}
    statuses: dict[int, set[str]] = {w.index: set() for w in waivers}
    for case in run.cases:
        decided = decide(case, waivers, run.profile, run.pics, on)
        if decided is None:
            continue
        waiver, status = decided
        case.waiver = {**waiver.describe(), "status": status}
        case.waived = status == APPLIED
        touched[waiver.index].append(case.id)
        statuses[waiver.index].add(status)
    rows = []
    for waiver in waivers:
        seen = statuses[waiver.index]
        if not waiver.holds(run.profile, run.pics):
            status = CONDITION_FALSE
        elif waiver.expired(on):
            status = EXPIRED
        else:
            status = next((s for s in (UNEXPECTED_PASS, APPLIED) if s in seen), UNUSED)
        rows.append({**waiver.describe(), "status": status, "cases": touched[waiver.index]})
    run.waivers = rows
    run.waiver_file = source


def decide(
    case: CaseResult, waivers: list[Waiver], profile: str, pics: dict[str, Any], on: date
) -> tuple[Waiver, str] | None:
    """The waiver that decides ``case`` on day ``on`` and its status, or None."""
    if case.verdict not in (Verdict.FAIL, Verdict.PASS):
        return None
    expired = None
    for waiver in waivers:
        if not waiver.matches(case.id) or not waiver.holds(profile, pics):
            continue
        if waiver.expired(on):
            expired = expired or waiver
            continue
        return waiver, APPLIED if case.verdict is Verdict.FAIL else UNEXPECTED_PASS
    if expired is not None and case.verdict is Verdict.FAIL:
        return expired, EXPIRED
    return None


def summary_lines(run: RunResult) -> list[str]:
    """Lines for the terminal summary (and stderr warnings) about the run's waivers."""
    lines = []
    for case in run.cases:
        waiver = case.waiver or {}
        status = waiver.get("status")
        if status == UNEXPECTED_PASS:
            lines.append(
                f"  UNEXPECTED PASS {case.id}: waived ({waiver['reason']}) but passed; "
                "remove the waiver"
            )
        elif status == APPLIED:
            lines.append(f"  WAIVED {case.id}: {case.reason} [waiver: {waiver['reason']}]")
    return lines


def expiry_warnings(run: RunResult) -> list[str]:
    return [
        f"kms-conformance run: waiver {row['case']!r} ({row['reason']}) expired on "
        f"{row['expires']} and no longer applies"
        + (f" (cases: {', '.join(row['cases'])})" if row["cases"] else "")
        for row in run.waivers or []
        if row["status"] == EXPIRED
    ]
