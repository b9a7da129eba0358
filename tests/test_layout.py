"""The layout rules of issue 17, read from the source with ``ast`` (nothing is imported).

* No module in conformance/ or refkms/ exceeds 600 lines (STYLE.md).
* The harness never imports the reference KMS; refkms imports only conformance.crypto and
  conformance.xmlsec (XML signature and encryption, the layer above crypto).
* conformance.crypto is pure: it imports nothing of the harness above it and no XML or HTTP
  library (XML signature and encryption are conformance.xmlsec, the layer above).
* The top level of conformance/ holds no module: each stage is a package (issue 17)
  whose __init__.py holds only its docstring, so that it imports nothing.
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
# Each stage is a package of conformance/ (issue 17); the top level holds only __init__.py.
# The order is the import order the code has; a case's way through the harness is
# catalogue -> target -> probe -> protection -> checks -> verdicts -> report -> run.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Exchange records, XML limits and hardened parsing, the data files: imported by every
    # stage, importing none.
    ("core", ("conformance", "conformance.core.*")),
    # The verdict vocabulary (outcomes, strengths, folding) and the run records: the checks
    # produce them, so the verdicts package sits here, below the checks, not after them;
    # one package with the run records because RunResult holds verdicts. Kept apart from
    # core so that core stays the part that knows nothing of judging.
    ("verdicts", ("conformance.verdicts.*",)),
    # Pure crypto: UID, key periods, ECCSI, SAKKE (no XML, no HTTP: test_crypto_is_pure).
    ("crypto", ("conformance.crypto.*",)),
    # XML signature and encryption (D.1, D.3.1) on top of the pure crypto.
    ("xmlsec", ("conformance.xmlsec.*",)),
    # The KmsResponse model and the profiles (schema, namespace, versions) it is read with.
    ("model", ("conformance.model.*", "conformance.profiles.*")),
    # The target file (PICS, PIXIT, users, secrets) and how users authenticate; the
    # [user_pattern] of a target file is read by the load package's parser.
    ("target", ("conformance.target.*", "conformance.load.users")),
    ("probe", ("conformance.probe.*",)),
    # Signature, decryption and key unwrapping, and the UE key state they use.
    ("protection", ("conformance.protection.*",)),
    ("checks", ("conformance.checks.*",)),
    # The case catalogue validates the check names its cases give, so it imports checks
    # (a case's way starts here, but its loader stands above the checks).
    ("catalogue", ("conformance.catalogue.*",)),
    ("report", ("conformance.report.*",)),
    # The engine, the pytest plugin, the CLI commands, replay, the offline check, load runs.
    ("run", ("conformance.run.*", "conformance.load.*")),
)

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
        imported = _imports(path)
        upward = sorted(
            i for i in _internal(imported, known) if not i.startswith("conformance.crypto")
        )
        libraries = sorted(i for i in imported if i.split(".")[0] in NOT_IN_CRYPTO)
        if upward or libraries:
            problems[name] = upward + libraries
    assert not problems, f"crypto/ must stay pure: {problems}"


def test_every_harness_module_has_a_stage() -> None:
    unplaced = sorted(m for m in _harness_modules() if _stage_of(m) is None)
    assert not unplaced, f"add these modules to a stage of STAGES: {unplaced}"


def test_stages_import_only_themselves_and_the_stages_before() -> None:
    known = _harness_modules()
    rank = {stage: index for index, (stage, _) in enumerate(STAGES)}
    wrong: list[str] = []
    for name, path in _modules("conformance"):
        own = _stage_of(name)
        if own is None:
            continue  # reported by test_every_harness_module_has_a_stage
        for imported in sorted(_internal(_imports(path), known)):
            stage = _stage_of(imported)
            if stage is not None and rank[stage] > rank[own]:
                wrong.append(f"{name} ({own}) imports {imported} ({stage})")
    assert not wrong, "imports against the stage order:\n" + "\n".join(wrong)


def test_the_stage_check_sees_a_wrong_edge(tmp_path: Path) -> None:
    # The rules read source text: a probe module importing the engine is caught.
    source = tmp_path / "probe_extra.py"
    source.write_text("from conformance.run.engine import Runner\n", encoding="utf-8")
    imported = _internal(_imports(source), _harness_modules())
    assert imported == {"conformance.run.engine"}
    rank = {stage: index for index, (stage, _) in enumerate(STAGES)}
    stage_of_probe = _stage_of("conformance.probe.sender")
    assert stage_of_probe is not None
    assert rank["run"] > rank[stage_of_probe]


# The stage packages of issue 17: a docstring only in each __init__.py, so importing one
# module of a stage imports no other (``list`` and ``explain`` start in under 0.5 s).
STAGE_PACKAGES = ("core", "verdicts", "model", "target", "probe", "protection", "catalogue", "run")


def test_the_top_level_holds_no_module() -> None:
    loose = sorted(
        path.name
        for path in (ROOT / "conformance").glob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    )
    assert not loose, f"put these modules into the package of their stage: {loose}"


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_a_stage_package_imports_nothing_on_import(package: str) -> None:
    body = ast.parse((ROOT / "conformance" / package / "__init__.py").read_text("utf-8")).body
    assert body and isinstance(body[0], ast.Expr), f"conformance/{package}: no docstring"
    assert all(isinstance(node, ast.Expr) for node in body), (
        f"conformance/{package}/__init__.py must hold its docstring only"
    )
