"""Fuzzing ``kms-conformance check``: mutated reference-KMS responses (issue 6 item 4).

The bases are valid responses of the reference KMS in every protection variant, fetched
once per session over loopback HTTPS (``fuzz_support.fetch_bases``), plus the saved
reference-KMS samples. Each property feeds mutants to the offline check code path,
``conformance.run.offline.check_file``, with the variant's target file (TrK/InK) and the
init response, and says what a user must see:

- the check never raises anything but ``UsageError`` (one line) and always gives results;
- a change of signed content in a signed response is always a violation;
- a flipped bit in any ``xenc:CipherValue`` is always a violation;
- a harmless change (namespace prefixes, an extension element where the schema has
  ``##other``, whitespace between elements) keeps an unsigned response conformant, and
  whitespace between the children of ``SignedKmsResponse`` keeps a signed one conformant.

Failures found are kept in ``tests/vectors/fuzz-corpus/`` (see its README) and replayed
by ``test_corpus_file_replays``. Runs are derandomized and database-free, so CI sees the
same examples every time; ``FUZZ_EXAMPLES_SCALE=10`` runs ten times as many locally.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_support import (
    ALL_KINDS,
    CORPUS,
    HARMLESS_KINDS,
    SIGNED_VARIANTS,
    TREE_KINDS,
    Base,
    Mutant,
    cipher_values,
    fetch_bases,
    mutants,
    signed_content,
)
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from conformance.run import offline
from conformance.verdicts.outcomes import CheckResult, Outcome

VARIANT_NAMES = ("plain", "signed", "message", "message-signed", "keys", "keys-signed")
SCALE = float(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Workbench:
    """The bases of one session and a scratch folder. Not a dataclass: hypothesis would
    print every base with each failing example."""

    def __init__(self, bases: dict[str, Base], workdir: Path) -> None:
        self.bases = bases
        self.workdir = workdir

    def __repr__(self) -> str:
        return f"Workbench({len(self.bases)} bases in {self.workdir})"

    def named(self, *, variants: tuple[str, ...] | None = None) -> list[str]:
        return sorted(
            name for name, b in self.bases.items() if variants is None or b.variant in variants
        )

    def target_of(self, variant: str) -> Path | None:
        return self.bases[f"{variant}/init"].target if variant != "sample" else None

    def init_of(self, variant: str) -> Path | None:
        return self.bases[f"{variant}/init" if variant != "sample" else "plain/init"].init

    def check(
        self, mutant: Mutant, base: Base, request_type: str | None, *, in_hypothesis: bool = True
    ) -> offline.OfflineResult:
        file = self.workdir / "mutant.xml"
        file.write_bytes(mutant.data)
        if in_hypothesis:
            note(f"base {base.name}: {mutant.describe()}")
        return offline.check_file(
            file, init_file=base.init, request_type=request_type, target_file=base.target
        )

    def keep(self, mutant: Mutant, base: Base) -> Path:
        """Save a failing mutant where a human can pick it up for the corpus."""
        failures = self.workdir / "failures"
        failures.mkdir(exist_ok=True)
        file = failures / f"{base.name.replace('/', '-')}-{mutant.kind}-{len(mutant.data)}.xml"
        file.write_bytes(mutant.data)
        return file


@pytest.fixture(scope="session")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    workdir = tmp_path_factory.mktemp("fuzz")
    yield Workbench(fetch_bases(workdir), workdir)


def violations(result: offline.OfflineResult) -> list[str]:
    return [f"{r.name}: {r.message}" for r in result.results if r.outcome is Outcome.VIOLATION]


# -- properties --------------------------------------------------------------------------


@fuzz_settings(200)
@given(data=st.data())
def test_check_never_raises_and_always_gives_results(bench: Workbench, data: st.DataObject) -> None:
    base = bench.bases[data.draw(st.sampled_from(bench.named()), label="base")]
    mutant = data.draw(mutants(base.data, ALL_KINDS), label="mutant")
    request_type = data.draw(st.sampled_from([base.request_type, None]), label="request type")
    try:
        result = bench.check(mutant, base, request_type)
    except offline.UsageError as exc:
        assert "\n" not in str(exc), f"multi-line UsageError: {exc!r}"
        return
    except Exception as exc:
        note(f"kept as {bench.keep(mutant, base)}")
        raise AssertionError(f"check raised {type(exc).__name__}: {exc}") from exc
    assert result.results, "no check results"
    for r in result.results:
        assert isinstance(r, CheckResult)
        assert "\n" not in r.message, f"{r.name}: multi-line message {r.message!r}"


@fuzz_settings(150)
@given(data=st.data())
def test_any_change_of_signed_content_is_a_violation(bench: Workbench, data: st.DataObject) -> None:
    base = bench.bases[data.draw(st.sampled_from(bench.named(variants=SIGNED_VARIANTS)))]
    mutant = data.draw(mutants(base.data, TREE_KINDS, scope="signed"), label="mutant")
    assume(signed_content(mutant.data) != signed_content(base.data))
    result = bench.check(mutant, base, base.request_type)
    if result.conformant:
        note(f"kept as {bench.keep(mutant, base)}")
    assert not result.conformant, f"undetected: {mutant.describe()}"


@fuzz_settings(50)
@given(data=st.data())
def test_a_flipped_ciphertext_bit_is_a_violation(bench: Workbench, data: st.DataObject) -> None:
    encrypted = [
        n for n in bench.named(variants=VARIANT_NAMES) if cipher_values(bench.bases[n].data)
    ]
    base = bench.bases[data.draw(st.sampled_from(encrypted), label="base")]
    mutant = data.draw(mutants(base.data, ("bitflip",), scope="cipher"), label="mutant")
    result = bench.check(mutant, base, base.request_type)
    if result.conformant:
        note(f"kept as {bench.keep(mutant, base)}")
    assert not result.conformant, f"undetected: {mutant.describe()}"


@fuzz_settings(120)
@given(data=st.data())
def test_harmless_changes_keep_an_unsigned_response_conformant(
    bench: Workbench, data: st.DataObject
) -> None:
    base = bench.bases[
        data.draw(st.sampled_from(bench.named(variants=("plain", "message", "keys"))))
    ]
    mutant = data.draw(mutants(base.data, HARMLESS_KINDS), label="mutant")
    result = bench.check(mutant, base, base.request_type)
    if not result.conformant:
        note(f"kept as {bench.keep(mutant, base)}")
    assert result.conformant, f"false positive after {mutant.describe()}: {violations(result)}"


@fuzz_settings(30)
@given(data=st.data())
def test_whitespace_outside_the_signed_response_keeps_it_conformant(
    bench: Workbench, data: st.DataObject
) -> None:
    base = bench.bases[data.draw(st.sampled_from(bench.named(variants=SIGNED_VARIANTS)))]
    mutant = data.draw(mutants(base.data, ("whitespace",), scope="outside-signed"))
    result = bench.check(mutant, base, base.request_type)
    assert result.conformant, f"false positive after {mutant.describe()}: {violations(result)}"


def test_every_base_is_conformant_before_mutation(bench: Workbench) -> None:
    # The properties above mean nothing if a base already fails.
    for name in bench.named(variants=VARIANT_NAMES):
        base = bench.bases[name]
        unchanged = Mutant(base.data, "none", "", "unchanged", False)
        result = bench.check(unchanged, base, base.request_type, in_hypothesis=False)
        assert result.conformant, f"{name}: {violations(result)}"


# -- the corpus ----------------------------------------------------------------------------

# File -> (variant whose target file it is checked with, request type, expected outcome,
# reason when a known bug makes it xfail). Outcomes: "violation", "conformant", "usage-error".
CORPUS_INDEX: dict[str, tuple[str, str | None, str, str | None]] = {
    "cert-empty-xsi-type.xml": ("plain", "cert", "violation", None),
    "keyprov-unknown-xsi-type.xml": ("plain", "keyprov", "violation", None),
    "init-truncated.xml": ("plain", "init", "usage-error", None),
    "signed-init-wrapped-kmsresponse.xml": ("signed", "init", "violation", None),
    "message-init-ciphertext-bit.xml": ("message", "init", "violation", None),
    "message-keyprov-prefix-rename.xml": ("message", "keyprov", "conformant", None),
}


def corpus_files() -> list[str]:
    return sorted(p.name for p in CORPUS.glob("*.xml"))


def corpus_params() -> list[object]:
    params: list[object] = []
    for name in corpus_files():
        known_bug = CORPUS_INDEX[name][3] if name in CORPUS_INDEX else None
        marks = [pytest.mark.xfail(reason=known_bug, strict=True)] if known_bug else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", corpus_params())
def test_corpus_file_replays(bench: Workbench, name: str) -> None:
    assert name in CORPUS_INDEX, f"{name}: add it to CORPUS_INDEX and the corpus README"
    variant, request_type, expected, _ = CORPUS_INDEX[name]
    base = Base(name, variant, request_type, b"", bench.target_of(variant), bench.init_of(variant))
    mutant = Mutant((CORPUS / name).read_bytes(), "corpus", "", name, False)
    try:
        result = bench.check(mutant, base, request_type, in_hypothesis=False)
    except offline.UsageError as exc:
        assert expected == "usage-error", f"unexpected UsageError: {exc}"
        assert "\n" not in str(exc)
        return
    assert expected != "usage-error", "expected a UsageError"
    assert result.conformant is (expected == "conformant"), violations(result)


def test_corpus_readme_names_every_file() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    missing = [name for name in corpus_files() if name not in readme]
    assert not missing, f"corpus files the README does not describe: {missing}"


CLI_SAMPLES = {
    "init-truncated.xml": 2,
    "cert-empty-xsi-type.xml": 1,
    "signed-init-wrapped-kmsresponse.xml": 1,
    "message-init-ciphertext-bit.xml": 1,
}


def test_cli_check_on_corpus_files_exits_cleanly(bench: Workbench) -> None:
    # One process per file, run side by side: each pays the interpreter start-up.
    running = {}
    for name in CLI_SAMPLES:
        variant, request_type, _, _ = CORPUS_INDEX[name]
        args = [str(CORPUS / name), "--init", str(bench.init_of(variant))]
        target = bench.target_of(variant)
        if target is not None:
            args += ["--target", str(target)]
        if request_type is not None:
            args += ["--request-type", request_type]
        running[name] = subprocess.Popen(
            [sys.executable, "-m", "conformance.run.cli", "check", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=120)
        assert "Traceback" not in stderr + stdout, f"{name}: {stderr}"
        assert process.returncode == CLI_SAMPLES[name], f"{name}: {stdout}{stderr}"
        if process.returncode == 2:
            assert len(stderr.strip().splitlines()) == 1, f"{name}: {stderr}"
