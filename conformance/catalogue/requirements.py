"""The requirement table (``testcases/requirements.yaml``): every REQ id of the spec digest."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from conformance.catalogue.cases import CaseFileError, catalogue_dir
from conformance.verdicts.results import RequirementInfo


@cache
def _load(path: Path) -> tuple[RequirementInfo, ...]:
    try:
        # libyaml's loader when built in: about 10x the pure-Python one (start-up).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except OSError as exc:
        raise CaseFileError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise CaseFileError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    entries = document.get("requirements") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise CaseFileError(f"{path}: expected a list of requirements")
    table = []
    for entry in entries:
        if not isinstance(entry, dict) or "id" not in entry:
            raise CaseFileError(f"{path}: every requirement needs an id ({entry!r:.60})")
        table.append(
            RequirementInfo(
                id=str(entry["id"]),
                clause=str(entry.get("clause", "")),
                strength=str(entry.get("strength", "shall")),
                title=str(entry.get("title", "")),
                probe_testable=bool(entry.get("probe", True)),
                untestable_reason=str(entry.get("reason", "")),
            )
        )
    return tuple(table)


def load_requirements(directory: Path | None = None) -> list[RequirementInfo]:
    return list(_load((directory or catalogue_dir()) / "requirements.yaml"))
