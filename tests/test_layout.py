"""The layout rules of issue 17, read from the source with ``ast`` (nothing is imported).

* No module in conformance/ or refkms/ exceeds 600 lines (STYLE.md).
* The harness never imports the reference KMS; refkms imports only conformance.crypto and
  conformance.xmlsec (XML signature and encryption, the layer above crypto).
* conformance.crypto is pure: it imports nothing of the harness above it and no XML or HTTP
  library; its only exceptions are the two re-exports left at the old paths of
  xmldsig/xmlenc, which must stay bare re-exports.
* Every harness module belongs to one stage of ``STAGES`` and imports only its own stage
  and the stages before it. The order is the import order the code has, lowest first;
  where it differs from a case's way through the harness (catalogue -> target -> probe ->
  protection -> checks -> verdicts -> report -> run) the table says why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600

# Stage -> the modules (dotted names; a trailing ".*" takes a package) it holds, lowest
# stage first. A module may import its own stage and the stages above it in this list.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # What every stage uses: outcomes and strengths (the verdict vocabulary is imported by
    # the checks that produce it, so it sits here rather than after checks), results.json
    # records, exchange records, XML and size limits, packaged data, pure crypto.
    (
        "foundation",
        (
            "conformance",
            "conformance.verdicts",
            "conformance.results",
            "conformance.exchange",
            "conformance.limits",
            "conformance.xmlsafe",
            "conformance.datafiles",
            "conformance.capture",
            "conformance.crypto.*",
        ),
    ),
    # XML signature and encryption (D.1, D.3.1) on top of the pure crypto.
    ("xmlsec", ("conformance.xmlsec.*",)),
    # The KmsResponse model and the profiles (schema, namespace, versions) it is read with.
    ("model", ("conformance.model", "conformance.profiles.*")),
    # The target file (PICS, PIXIT, users, secrets) and how users authenticate.
    (
        "target",
        (
            "conformance.target",
            "conformance.target_values",
            "conformance.target_template",
            "conformance.auth",
            # [user_pattern] of a target file is read by the load package's parser.
            "conformance.load.users",
        ),
    ),
    ("probe", ("conformance.probe", "conformance.probe_requests", "conformance.probe_transport")),
    # Signature, decryption and key unwrapping, and the UE key state they use.
    ("protection", ("conformance.protection", "conformance.uestate")),
    ("checks", ("conformance.checks.*",)),
    # The case catalogue validates the check names its cases give, so it imports checks
    # (a case's way starts here, but its loader stands above the checks).
    (
        "catalogue",
        ("conformance.cases", "conformance.requirements", "conformance.waivers"),
    ),
    ("report", ("conformance.report.*", "conformance.diff")),
    # The engine, the pytest plugin, the CLI commands, replay, the offline check, load runs.
    (
        "run",
        (
            "conformance.engine",
            "conformance.control",
            "conformance.explain",
            "conformance.lanes",
            "conformance.plugin",
            "conformance.runcmd",
            "conformance.cli",
            "conformance.replay",
            "conformance.offline",
            "conformance.redacted_input",
            "conformance.preflight",
            "conformance.bundle",
            "conformance.embedded_config",
            "conformance.pipes",
            "conformance.load.*",
        ),
    ),
)

# The old paths of the modules that moved to conformance/xmlsec/ (issue 17).
CRYPTO_REEXPORTS = frozenset({"conformance.crypto.xmldsig", "conformance.crypto.xmlenc"})
NOT_IN_CRYPTO = ("lxml", "httpx", "httpcore", "xml", "defusedxml", "xmlschema", "signxml")


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names, at any depth (lazy ones too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from conformance import crypto`` names the module conformance.crypto
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _harness_modules() -> set[str]:
    return {name for name, _ in _modules("conformance")}


def _stage_of(module: str) -> str | None:
    for stage, members in STAGES:
        for member in members:
            if module == member or (
                member.endswith(".*") and (module + ".").startswith(member[:-1])
            ):
                return stage
    return None


def _internal(imported: set[str], known: set[str]) -> set[str]:
    """The harness modules among ``imported`` (a ``from X import name`` that is not a
    module names X itself, which is in ``imported`` too)."""
    return {name for name in imported if name in known}


@pytest.mark.parametrize("package", ["conformance", "refkms"])
def test_no_module_exceeds_600_lines(package: str) -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for _, path in _modules(package)
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_harness_never_imports_the_reference_kms() -> None:
    offenders = {
        name: sorted(i for i in _imports(path) if i.split(".")[0] == "refkms")
        for name, path in _modules("conformance")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_reference_kms_imports_only_crypto_and_xmlsec() -> None:
    offenders = {
        name: sorted(
            i
            for i in _imports(path)
            if i.split(".")[0] == "conformance"
            and i not in ("conformance", "conformance.crypto", "conformance.xmlsec")
            and not i.startswith(("conformance.crypto.", "conformance.xmlsec."))
        )
        for name, path in _modules("refkms")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_crypto_is_pure() -> None:
    known = _harness_modules()
    problems: dict[str, list[str]] = {}
    for name, path in _modules("conformance/crypto"):
        if name in CRYPTO_REEXPORTS:
            continue  # test_old_crypto_paths_only_reexport_xmlsec
        imported = _imports(path)
        upward = sorted(
            i for i in _internal(imported, known) if not i.startswith("conformance.crypto")
        )
        libraries = sorted(i for i in imported if i.split(".")[0] in NOT_IN_CRYPTO)
        if upward or libraries:
            problems[name] = upward + libraries
    assert not problems, f"crypto/ must stay pure: {problems}"


def test_old_crypto_paths_only_reexport_xmlsec() -> None:
    for name in sorted(CRYPTO_REEXPORTS):
        path = ROOT / (name.replace(".", "/") + ".py")
        body = ast.parse(path.read_text(encoding="utf-8")).body
        statements = [n for n in body if not isinstance(n, ast.Expr)]  # the docstring
        moved_to = "conformance.xmlsec." + name.rsplit(".", 1)[1]
        assert [(type(n).__name__, getattr(n, "module", None)) for n in statements] == [
            ("ImportFrom", moved_to)
        ], f"{name} must only re-export {moved_to}"


def test_every_harness_module_has_a_stage() -> None:
    unplaced = sorted(m for m in _harness_modules() if _stage_of(m) is None)
    assert not unplaced, f"add these modules to a stage of STAGES: {unplaced}"


def test_stages_import_only_themselves_and_the_stages_before() -> None:
    known = _harness_modules()
    rank = {stage: index for index, (stage, _) in enumerate(STAGES)}
    wrong: list[str] = []
    for name, path in _modules("conformance"):
        own = _stage_of(name)
        if own is None or name in CRYPTO_REEXPORTS:
            continue  # reported by test_every_harness_module_has_a_stage
        for imported in sorted(_internal(_imports(path), known)):
            stage = _stage_of(imported)
            if stage is not None and rank[stage] > rank[own]:
                wrong.append(f"{name} ({own}) imports {imported} ({stage})")
    assert not wrong, "imports against the stage order:\n" + "\n".join(wrong)


def test_the_stage_check_sees_a_wrong_edge(tmp_path: Path) -> None:
    # The rules read source text: a probe module importing the engine is caught.
    source = tmp_path / "probe_extra.py"
    source.write_text("from conformance.engine import Runner\n", encoding="utf-8")
    imported = _internal(_imports(source), _harness_modules())
    assert imported == {"conformance.engine"}
    rank = {stage: index for index, (stage, _) in enumerate(STAGES)}
    stage_of_probe = _stage_of("conformance.probe")
    assert stage_of_probe is not None
    assert rank["run"] > rank[stage_of_probe]
