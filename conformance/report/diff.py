"""``kms-conformance diff OLD NEW``: what changed between two runs (a CI baseline gate).

OLD and NEW are results.json files or the output folders holding them. The diff lists
cases that newly fail, newly pass, changed verdict otherwise, were added or removed (a
catalogue change), and checks whose message changed. A *regression* is a case of NEW that
fails (unwaived) or errors where OLD did not, a case added that fails or errors included;
``--fail-on regressions`` makes any regression exit 1. Output as text, JSON or a Markdown
table for a pull-request comment.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from conformance.report.results_json import ResultsFileError, read_results

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2
BAD = ("fail", "error")


class DiffInputError(ValueError):
    """OLD or NEW is not a results.json this tool can read."""


@dataclass
class Change:
    id: str
    old: str  # the verdict label (fail (waived) for a waived fail), "" when absent
    new: str
    title: str = ""
    reason: str = ""  # the new one-line reason (old one when removed)


@dataclass
class MessageChange:
    case: str
    check: str
    old: str
    new: str


@dataclass
class RunDiff:
    old: str
    new: str
    newly_failing: list[Change] = field(default_factory=list)
    newly_passing: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    messages: list[MessageChange] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return self.newly_failing + [c for c in self.added if _bad(c.new)]

    def to_json(self) -> dict[str, Any]:
        def rows(changes: list[Change]) -> list[dict[str, str]]:
            return [c.__dict__ for c in changes]

        return {
            "old": self.old,
            "new": self.new,
            "regressions": [c.id for c in self.regressions],
            "newly_failing": rows(self.newly_failing),
            "newly_passing": rows(self.newly_passing),
            "changed_verdicts": rows(self.changed),
            "added": rows(self.added),
            "removed": rows(self.removed),
            "changed_messages": [m.__dict__ for m in self.messages],
        }


def load_results(path: Path) -> dict[str, Any]:
    """A results.json document from a file or an output folder."""
    file = path / "results.json" if path.is_dir() else path
    try:
        return read_results(file, missing="give a results.json or its folder")
    except ResultsFileError as exc:
        raise DiffInputError(str(exc)) from None


def verdict_label(case: dict[str, Any]) -> str:
    status = (case.get("waiver") or {}).get("status")
    if status == "applied":
        return "fail (waived)"
    if status == "unexpected pass":
        return "pass (unexpected)"
    return str(case.get("verdict", ""))


def _bad(label: str) -> bool:
    return label in BAD or label == "pass (unexpected)"


def diff_runs(old: dict[str, Any], new: dict[str, Any], old_name: str, new_name: str) -> RunDiff:
    result = RunDiff(old_name, new_name)
    before = {c["id"]: c for c in old["cases"]}
    after = {c["id"]: c for c in new["cases"]}
    for case_id, case in after.items():
        label = verdict_label(case)
        change = Change(case_id, "", label, case.get("title", ""), case.get("reason", ""))
        if case_id not in before:
            result.added.append(change)
            continue
        change.old = verdict_label(before[case_id])
        if change.old != change.new:
            if _bad(change.new) and not _bad(change.old):
                result.newly_failing.append(change)
            elif change.new == "pass":
                result.newly_passing.append(change)
            else:
                result.changed.append(change)
        result.messages += _message_changes(case_id, before[case_id], case)
    for case_id, case in before.items():
        if case_id not in after:
            label = verdict_label(case)
            result.removed.append(
                Change(case_id, label, "", case.get("title", ""), case.get("reason", ""))
            )
    return result


def _message_changes(case_id: str, old: dict[str, Any], new: dict[str, Any]) -> list[MessageChange]:
    """Checks matched by name and occurrence (a case may run a check once per step)."""

    def keyed(case: dict[str, Any]) -> dict[tuple[str, int], str]:
        seen: dict[str, int] = {}
        out = {}
        for check in case.get("checks", []):
            name = str(check.get("name", ""))
            seen[name] = seen.get(name, 0) + 1
            out[(name, seen[name])] = f"{check.get('outcome', '')}: {check.get('message', '')}"
        return out

    before, after = keyed(old), keyed(new)
    changes = []
    for key in [*before, *(k for k in after if k not in before)]:
        was, now = before.get(key, "(not run)"), after.get(key, "(not run)")
        if was != now:
            name = key[0] if key[1] == 1 else f"{key[0]} #{key[1]}"
            changes.append(MessageChange(case_id, name, was, now))
    return changes


# -- output -----------------------------------------------------------------------------

_SECTIONS = (
    ("newly_failing", "Newly failing"),
    ("newly_passing", "Newly passing"),
    ("changed", "Changed verdicts"),
    ("added", "Cases added"),
    ("removed", "Cases removed"),
)


def render_text(d: RunDiff) -> str:
    lines = [f"kms-conformance diff {d.old} -> {d.new}"]
    for attr, title in _SECTIONS:
        changes: list[Change] = getattr(d, attr)
        lines.append(f"{title}: {len(changes)}")
        for c in changes:
            arrow = f"{c.old or '-'} -> {c.new or '-'}"
            lines.append(f"  {c.id}: {arrow}" + (f" ({c.reason})" if c.reason else ""))
    lines.append(f"Changed check messages: {len(d.messages)}")
    for m in d.messages:
        lines.append(f"  {m.case} {m.check}:\n    - {m.old}\n    + {m.new}")
    lines.append(f"Regressions: {len(d.regressions)}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown(d: RunDiff) -> str:
    regressions = len(d.regressions)
    head = "no regression" if not regressions else f"**{regressions} regression(s)**"
    lines = [f"### kms-conformance: {head}", "", f"`{_md(d.old)}` → `{_md(d.new)}`", ""]
    lines += [
        "| Change | Case | Old | New | Reason |",
        "|---|---|---|---|---|",
    ]
    rows = 0
    for attr, title in _SECTIONS:
        for c in getattr(d, attr):
            rows += 1
            lines.append(
                f"| {title} | `{c.id}` | {c.old or '–'} | {c.new or '–'} | {_md(c.reason)} |"
            )
    if not rows:
        lines.append("| – | no case changed its verdict | | | |")
    if d.messages:
        lines += ["", "| Case | Check | Old message | New message |", "|---|---|---|---|"]
        lines += [f"| `{m.case}` | `{m.check}` | {_md(m.old)} | {_md(m.new)} |" for m in d.messages]
    return "\n".join(lines) + "\n"


def main(
    old: str,
    new: str,
    fmt: str = "text",
    *,
    fail_on: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    try:
        result = diff_runs(load_results(Path(old)), load_results(Path(new)), old, new)
    except DiffInputError as exc:
        print(f"kms-conformance diff: {exc}", file=err)
        return EXIT_USAGE
    if fmt == "json":
        out.write(json.dumps(result.to_json(), indent=2) + "\n")
    elif fmt == "markdown":
        out.write(render_markdown(result))
    else:
        out.write(render_text(result))
    if fail_on == "regressions" and result.regressions:
        ids = ", ".join(c.id for c in result.regressions)
        print(f"kms-conformance diff: {len(result.regressions)} regression(s): {ids}", file=err)
        return EXIT_REGRESSION
    return EXIT_OK
