"""checks.toml and @check("name"): a check's REQ ids, clause and strength come from the
table, and a check without a line, a line without a check or a malformed line fails at
import instead of reaching a report."""

from __future__ import annotations

import pytest

from conformance.checks import REGISTRY, CheckContext, Finding, HarnessError, base
from conformance.checks.base import CheckMetadata, check, load_metadata, ok
from conformance.verdicts.outcomes import Strength


def _judge(ctx: CheckContext) -> Finding:
    """A check of this test module."""
    return ok("judged")


def test_every_line_of_the_table_is_a_registered_check_of_its_module() -> None:
    table = load_metadata(base.CHECKS_TABLE.read_text(encoding="utf-8"))
    assert set(table) == set(REGISTRY)
    for name, meta in table.items():
        spec = REGISTRY[name]
        assert spec.function.__module__ == f"conformance.checks.{meta.module}", name
        assert (spec.reqs, spec.clause, spec.strength, spec.inferred) == (
            meta.reqs,
            meta.clause,
            meta.strength,
            meta.inferred,
        ), name


def test_the_table_gives_the_reqs_clause_and_strength_a_report_shows() -> None:
    spec = REGISTRY["error.code-matches-status"]
    assert spec.reqs == ("REQ-065",)
    assert spec.clause == "kms-interface.md 12 (convention)"
    assert spec.strength is Strength.SHOULD and spec.inferred
    assert REGISTRY["keyset.uid"].strength is Strength.SHALL
    assert not REGISTRY["keyset.uid"].inferred


def test_a_check_without_a_line_in_the_table_fails_to_register() -> None:
    with pytest.raises(HarnessError, match=r"'test.unlisted' has no line in checks.toml"):
        check("test.unlisted")(_judge)
    assert "test.unlisted" not in REGISTRY


def test_a_check_listed_under_another_module_fails_to_register(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        base.METADATA, "test.elsewhere", CheckMetadata("errors", ("REQ-001",), "D.1")
    )
    with pytest.raises(HarnessError, match=r"defined in test_check_table.py but listed under"):
        check("test.elsewhere")(_judge)
    assert "test.elsewhere" not in REGISTRY


def test_a_line_whose_check_no_module_defines_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    base.require_every_check_defined()
    monkeypatch.setitem(base.METADATA, "test.orphan", CheckMetadata("errors", ("REQ-001",), "D.1"))
    with pytest.raises(HarnessError, match=r"lists checks that no module defines: test.orphan"):
        base.require_every_check_defined()


def test_a_check_registered_twice_fails() -> None:
    with pytest.raises(HarnessError, match="registered twice"):
        check("transport.tls")(_judge)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('"a.b" = { reqs = ["REQ-001"], clause = "D.1", severity = "high" }', "unknown key"),
        ('"a.b" = { reqs = [], clause = "D.1" }', "at least one REQ id"),
        ('"a.b" = { clause = "D.1" }', "at least one REQ id"),
        ('"a.b" = { reqs = ["D.1"], clause = "D.1" }', "is not a REQ id"),
        ('"a.b" = { reqs = ["REQ-001"], clause = " " }', "clause must be"),
        ('"a.b" = { reqs = ["REQ-001"], clause = "D.1", strength = "must" }', "strength 'must'"),
        ('"a.b" = { reqs = ["REQ-001"], clause = "D.1", inferred = "yes" }', "inferred must be"),
        ('"a.b" = "REQ-001"', "not a table"),
    ],
)
def test_a_malformed_line_is_refused_naming_the_check(line: str, problem: str) -> None:
    with pytest.raises(HarnessError, match=rf"\[transport\] 'a.b': .*{problem}"):
        load_metadata(f"[transport]\n{line}\n")


def test_a_check_listed_in_two_tables_is_refused() -> None:
    text = '[errors]\n"a.b" = { reqs = ["REQ-001"], clause = "D.1" }\n[transport]\n'
    text += '"a.b" = { reqs = ["REQ-001"], clause = "D.1" }\n'
    with pytest.raises(HarnessError, match=r"'a.b' listed under \[errors\] and \[transport\]"):
        load_metadata(text)


def test_defaults_are_shall_and_not_inferred() -> None:
    table = load_metadata('[errors]\n"a.b" = { reqs = ["REQ-001", "REQ-002"], clause = "D.1" }')
    assert table["a.b"] == CheckMetadata("errors", ("REQ-001", "REQ-002"), "D.1")
    assert table["a.b"].strength is Strength.SHALL and not table["a.b"].inferred
