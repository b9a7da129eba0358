"""The declarative case catalogue: load ``testcases/*.yaml``, check it, decide PICS.

Each file is validated against ``testcases/case-schema.json`` when loaded; any problem is a
``CaseFileError`` whose message is one line, ``FILE:LINE: problem`` (exit 2 at the CLI).
Check names are expanded (globs allowed) against the check registry at load time, so a
misspelt check name is a broken case file, not a silently empty case.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from conformance.checks import REGISTRY
from conformance.core.datafiles import data_dir
from conformance.protection.uestate import BINDING_NAMES, binding_names
from conformance.target.file import Target

AREAS = (
    "transport",
    "request",
    "envelope",
    "init",
    "keyprov",
    "certcache",
    "lookup",
    "security",
    "errors",
    "rotation",
)
PICS_NAMES = (
    "cert",
    "lookup",
    "redirect",
    "encryption",
    "signing",
    "ink",
    "request_signing",
    "certcache_incremental",
    "tk_ik_delivery",
    "trk_rotation",
    "ink_rotation",
    "kms_cert_rotation",
    "release",
)


# libyaml's safe loader when PyYAML has it (about 10x faster), the pure one otherwise; both
# give the node marks the FILE:LINE messages need.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Files this process loaded already, by path and text: a run loads the catalogue for the
# command, for pytest's collection and for the report order.
_LOADED: dict[tuple[str, str], list[Case]] = {}
_VALID_FORMAT = "1"  # bump when the meaning of a remembered "valid" changes


class CaseFileError(ValueError):
    """A broken case file; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Step:
    label: str
    request: str
    spec: Mapping[str, Any]  # the step as written (the probe reads it)
    expect_status: tuple[int, ...] | str  # ints, or a class such as "4xx"
    expect_message: str | None
    checks: tuple[str, ...]
    # New keys ("trk", "ink") the later steps need from this step
    # (conformance/protection/uestate.py).
    delivers: tuple[str, ...] = ()

    def status_ok(self, status: int) -> bool:
        if isinstance(self.expect_status, str):
            return str(status)[0] == self.expect_status[0]
        return status in self.expect_status

    @property
    def status_text(self) -> str:
        if isinstance(self.expect_status, str):
            return self.expect_status
        return " or ".join(str(s) for s in self.expect_status)


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    area: str
    reqs: tuple[str, ...]
    clause: str
    strength: str
    inferred: bool
    pics: str
    needs: tuple[str, ...]
    purpose: str
    steps: tuple[Step, ...]
    file: Path
    line: int
    area_title: str = ""
    tags: tuple[str, ...] = field(default=())
    # Concurrency (run/lanes.py): cases of one serial group run in order in one lane; a case
    # that changes a user's state at the KMS runs alone.
    serial_group: str = ""
    changes_state: bool = False

    @property
    def request_types(self) -> tuple[str, ...]:
        # A control step (conformance/run/control.py) sends no KMS request.
        return tuple(dict.fromkeys(s.request for s in self.steps if s.request != "control"))

    @property
    def check_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for step in self.steps for name in step.checks))


def catalogue_dir() -> Path:
    """``testcases/`` beside the package (KMS_CONFORMANCE_CASES overrides)."""
    override = os.environ.get("KMS_CONFORMANCE_CASES")
    if override:
        return Path(override)
    return data_dir("testcases")


@cache
def _schema(directory: Path) -> dict[str, Any]:
    path = directory / "case-schema.json"
    try:
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CaseFileError(f"{path}: cannot read the case schema ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise CaseFileError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    return schema


def load_catalogue(directory: Path | None = None) -> list[Case]:
    """Every case of every area file, in file then document order; ids are unique."""
    directory = directory or catalogue_dir()
    if not directory.is_dir():
        raise CaseFileError(f"{directory}: the case catalogue directory does not exist")
    files = sorted(p for p in directory.glob("*.yaml") if p.stem != "requirements")
    if not files:
        raise CaseFileError(f"{directory}: holds no case file (*.yaml)")
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for path in files:
        for case in load_file(path, _schema(directory)):
            if case.id in seen:
                raise CaseFileError(
                    f"{path}:{case.line}: case id {case.id} is already used at {seen[case.id]}"
                )
            seen[case.id] = f"{path.name}:{case.line}"
            cases.append(case)
    return cases


def load_file(path: Path, schema: Mapping[str, Any]) -> list[Case]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaseFileError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise CaseFileError(f"{path}: not UTF-8 text") from None
    key = (str(path), text)
    if key not in _LOADED:
        if len(_LOADED) > 64:  # a long-lived process loading many catalogues (tests)
            _LOADED.clear()
        _LOADED[key] = _load_text(path, text, schema)
    return list(_LOADED[key])


def _load_text(path: Path, text: str, schema: Mapping[str, Any]) -> list[Case]:
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CaseFileError(f"{path}:{line}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    digest = _validity_digest(text, schema)
    if not _known_valid(digest):
        import jsonschema  # ~0.3 s with the validation: skipped for a file validated before

        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        if errors:
            error = jsonschema.exceptions.best_match(errors) or errors[0]
            where = "/".join(str(p) for p in error.absolute_path) or "(top)"
            line = _line_of(node, list(error.absolute_path))
            raise CaseFileError(f"{path}:{line}: {where}: {_one_line(error.message)}")
        _remember_valid(digest)
    assert isinstance(document, dict)
    if document["area"] != path.stem:
        line = _line_of(node, ["area"])
        raise CaseFileError(f"{path}:{line}: area {document['area']!r} must equal the file stem")
    cases = []
    for index, raw in enumerate(document["cases"]):
        cases.append(_case(path, node, index, raw, document))
    return cases


def _validity_cache() -> Path | None:
    """Where digests of schema-valid case files are remembered (KMS_CONFORMANCE_CACHE, else
    the XDG cache directory); None when no cache is wanted (KMS_CONFORMANCE_CACHE=off)."""
    configured = os.environ.get("KMS_CONFORMANCE_CACHE")
    if configured == "off":
        return None
    if configured:
        return Path(configured) / "valid-cases"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kms-conformance" / "valid-cases"


def _validity_digest(text: str, schema: Mapping[str, Any]) -> str:
    """SHA-256 over the file's text and the schema: a valid file with either changed is
    validated again."""
    h = hashlib.sha256(_VALID_FORMAT.encode())
    h.update(json.dumps(schema, sort_keys=True).encode("utf-8"))
    h.update(b"\0")
    h.update(text.encode("utf-8"))
    return h.hexdigest()


def _known_valid(digest: str) -> bool:
    directory = _validity_cache()
    return directory is not None and (directory / digest).is_file()


def _remember_valid(digest: str) -> None:
    directory = _validity_cache()
    if directory is None:
        return
    try:  # a cache only: a read-only or missing home just means validating next time
        directory.mkdir(parents=True, exist_ok=True)
        (directory / digest).touch()
    except OSError:
        pass


def _case(
    path: Path, node: Any, index: int, raw: Mapping[str, Any], doc: Mapping[str, Any]
) -> Case:
    line = _line_of(node, ["cases", index])
    pics = str(raw.get("pics", "true"))
    try:
        compile_pics(pics)
    except CaseFileError as exc:
        raise CaseFileError(f"{path}:{_line_of(node, ['cases', index, 'pics'])}: {exc}") from None
    steps = []
    for number, step in enumerate(raw["steps"], start=1):
        where = ["cases", index, "steps", number - 1]
        expanded: list[str] = []
        for name in step.get("checks", []):
            matches = _expand(name)
            if not matches:
                line_no = _line_of(node, [*where, "checks"])
                raise CaseFileError(f"{path}:{line_no}: {raw['id']}: no check is named {name!r}")
            expanded.extend(m for m in matches if m not in expanded)
        expect = step.get("expect", {})
        status = expect.get("status", 200)
        statuses: tuple[int, ...] | str = (
            status
            if isinstance(status, str)
            else tuple(status if isinstance(status, list) else [status])
        )
        steps.append(
            Step(
                label=str(step.get("label", f"step{number}")),
                request=step["request"],
                spec=step,
                expect_status=statuses,
                expect_message=expect.get("message"),
                checks=tuple(expanded),
                delivers=tuple(step.get("delivers", ())),
            )
        )
        _check_bindings(path, node, where, raw["id"], step, earlier=[s.label for s in steps[:-1]])
    return Case(
        id=raw["id"],
        title=raw["title"],
        area=doc["area"],
        reqs=tuple(raw["reqs"]),
        clause=str(raw["clause"]),
        strength=raw.get("strength", "shall"),
        inferred=bool(raw.get("inferred", False)),
        pics=pics,
        needs=tuple(raw.get("needs", ())),
        purpose=" ".join(str(raw.get("purpose", "")).split()),
        steps=tuple(steps),
        file=path,
        line=line,
        area_title=str(doc.get("title", "")),
        serial_group=str(raw.get("serial_group", "")),
        changes_state=bool(raw.get("changes_state", False)),
    )


def _check_bindings(
    path: Path,
    node: Any,
    where: list[Any],
    case_id: str,
    step: Mapping[str, Any],
    *,
    earlier: list[str],
) -> None:
    """Each ``${LABEL.NAME}`` of a step names an earlier step and a known value."""
    for value in (step.get("fields") or {}).values():
        for label, name in binding_names(str(value)):
            problem = None
            if label not in earlier:
                problem = f"binds ${{{label}.{name}}}, but no earlier step is labelled {label!r}"
            elif name not in BINDING_NAMES:
                problem = f"binds ${{{label}.{name}}}: known names are {', '.join(BINDING_NAMES)}"
            if problem:
                line = _line_of(node, [*where, "fields"])
                raise CaseFileError(f"{path}:{line}: {case_id}: {problem}")


def _expand(name: str) -> list[str]:
    if any(ch in name for ch in "*?["):
        return [n for n in REGISTRY if fnmatch.fnmatchcase(n, name)]
    return [name] if name in REGISTRY else []


def _line_of(node: Any, path: Sequence[Any]) -> int:
    """The 1-based line of the YAML node at ``path`` (the nearest existing ancestor)."""
    current = node
    for key in path:
        if isinstance(current, yaml.MappingNode):
            found = None
            for k, v in current.value:
                if k.value == key:
                    found = v
                    break
            if found is None:
                break
            current = found
        elif isinstance(current, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(current.value):
                break
            current = current.value[key]
        else:
            break
    return int(current.start_mark.line) + 1 if current is not None else 1


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:197] + "..."


# -- selection --------------------------------------------------------------------------


def select(cases: Sequence[Case], patterns: Iterable[str] | None) -> list[Case]:
    """Cases whose id (or area) matches one of the globs; all cases when none are given."""
    wanted = [p for p in (patterns or ()) if p]
    if not wanted:
        return list(cases)
    chosen = [
        c
        for c in cases
        if any(fnmatch.fnmatchcase(c.id, p.upper()) or c.area == p.lower() for p in wanted)
    ]
    return chosen


# -- PICS ------------------------------------------------------------------------------

_ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Name,
    ast.Load,
    ast.Constant,
)


@cache
def compile_pics(expression: str) -> ast.Expression:
    """Parse a PICS expression, allowing only names, and/or/not, ==, != and literals."""
    source = expression.replace("true", "True").replace("false", "False")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise CaseFileError(f"PICS expression {expression!r} is not valid") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise CaseFileError(f"PICS expression {expression!r} uses {type(node).__name__}")
        if isinstance(node, ast.Name) and node.id not in (*PICS_NAMES, "True", "False"):
            raise CaseFileError(f"PICS expression {expression!r}: unknown name {node.id!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (str, bool)):
            raise CaseFileError(f"PICS expression {expression!r}: only strings and booleans")
    return tree


def pics_values(target: Target) -> dict[str, Any]:
    pics = target.pics
    return {
        "cert": pics.cert,
        "lookup": pics.lookup,
        "redirect": pics.redirect,
        "encryption": pics.encryption,
        "signing": pics.signing,
        "ink": pics.ink,
        "request_signing": pics.request_signing,
        "certcache_incremental": pics.certcache_incremental,
        "tk_ik_delivery": pics.tk_ik_delivery,
        "trk_rotation": pics.trk_rotation,
        "ink_rotation": pics.ink_rotation,
        "kms_cert_rotation": pics.kms_cert_rotation,
        "release": target.profile.release,
    }


def pics_applies(expression: str, values: Mapping[str, Any]) -> bool:
    return bool(_evaluate(compile_pics(expression).body, values))


def _evaluate(node: ast.AST, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        results = (_evaluate(v, values) for v in node.values)
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp):
        return not _evaluate(node.operand, values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, values)
            if (left == right) != isinstance(op, ast.Eq):
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        if node.id in ("True", "False"):
            return node.id == "True"
        return values[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    raise CaseFileError(f"cannot evaluate {type(node).__name__}")


def missing_need(need: str, target: Target) -> str | None:
    """Why a ``needs`` input is missing from the target file, or None when it is there."""
    head, _, rest = need.partition(".")
    if head == "users":
        count = int(rest or "1")
        if len(target.users) < count:
            return f"needs {count} [[users]] entries, the target file has {len(target.users)}"
        return None
    if head == "tokens":
        if getattr(target.tokens, rest, None) is None:
            return f"needs [tokens] {rest} in the target file"
        return None
    if head == "pixit":
        value = getattr(target.pixit, rest, None)
        if not value:
            return f"needs [pixit] {rest} in the target file"
        return None
    if head == "keys":
        user = target.users[0] if target.users else None
        key = getattr(user, rest, None) if user else None
        if key is None:
            return f"needs the first user's {rest} ([keys] or [[users]] {rest}) in the target file"
        return None
    return f"needs {need}, which this harness does not know how to supply"
