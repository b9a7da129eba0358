"""Budgets a target's answers may spend: structure per answer, CPU per case, evidence per run.

A hostile KMS can send an answer well under ``max_body_bytes`` that is cheap to parse but
expensive to look at (hundreds of thousands of attributes, namespace declarations on every
element): xmlschema's pure-Python validation would then work for minutes. So every parsed
answer is measured during parsing, before any model or validator sees it
(``StructureCounter``), and each case's own work (parsing, decryption, checks) runs under a
CPU budget (``cpu_budget``). A run's evidence on disk has a budget too
(``max_evidence_bytes``, applied by ``conformance.report.evidence``).

Every budget is a key of the target file's ``[limits]`` table (DESIGN.md sections 4 and 8)
with a safe default; past a limit the case is ``fail`` with one line that names the limit,
its value and what the target sent.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The ``[limits]`` table of a target file; every key is optional."""

    # Per answer, counted while parsing (comments and processing instructions count as
    # elements: each is a node a validator visits).
    max_elements: int = 50_000
    max_depth: int = 64
    max_attributes_per_element: int = 200
    max_namespace_declarations: int = 500
    max_namespace_declarations_per_element: int = 50
    max_text_chars: int = 2 * MIB
    # Per case: CPU seconds the harness may spend on parsing, decryption and checks.
    case_cpu_s: float = 30.0
    # Per run: bytes of evidence bodies written under evidence/.
    max_evidence_bytes: int = 64 * MIB

    def public(self) -> dict[str, int | float]:
        """The limits as a report shows them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT_LIMITS = Limits()
_FLOAT_KEYS = frozenset({"case_cpu_s"})


def read_limits(table: Mapping[str, Any], fail: Callable[[str, str], Exception]) -> Limits:
    """``Limits`` from a target file's ``[limits]`` table; ``fail(key, problem)`` builds the
    exception for a bad value (the target file's one-line error)."""
    known = {f.name for f in fields(Limits)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise fail(f"limits.{key}", f"unknown key (known: {', '.join(sorted(known))})")
        if key in _FLOAT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise fail(f"limits.{key}", "must be a positive number of seconds")
            values[key] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise fail(f"limits.{key}", "must be a positive integer")
            values[key] = value
    return Limits(**values)


# -- structure of one answer ------------------------------------------------------------


class LimitExceeded(ValueError):
    """An answer (or a case) went past one of the ``[limits]``; ``str()`` is one line
    without a subject, e.g. "exceeds limits.max_depth (64): 65 at <KmsMessage>"."""

    def __init__(self, limit: str, allowed: float, observed: str) -> None:
        self.limit = limit
        self.allowed = allowed
        self.observed = observed
        shown = f"{allowed:g}" if isinstance(allowed, float) else str(allowed)
        super().__init__(f"exceeds limits.{limit} ({shown}): {observed}")


class StructureCounter:
    """Counts what ``lxml.etree.iterparse`` reports (events ``start``, ``end``,
    ``start-ns``, ``comment``, ``pi``) and raises ``LimitExceeded`` at the first limit
    passed, so parsing stops there. Costs O(1) per event: nothing here walks the tree."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.nodes = 0
        self.depth = 0
        self.namespaces = 0
        self.text = 0
        self._pending_ns = 0
        self._ended: Any = None  # the last closed element: its tail is complete later

    def event(self, kind: str, node: Any) -> None:
        limits = self.limits
        if self._ended is not None:
            self._add_text(self._ended.tail, self._ended)
            self._ended = None
        if kind == "start-ns":
            self.namespaces += 1
            self._pending_ns += 1
            if self.namespaces > limits.max_namespace_declarations:
                raise LimitExceeded(
                    "max_namespace_declarations",
                    limits.max_namespace_declarations,
                    f"more than {limits.max_namespace_declarations} in the document",
                )
            return
        if kind == "start":
            self._count_node(node)
            self.depth += 1
            if self.depth > limits.max_depth:
                raise LimitExceeded("max_depth", limits.max_depth, f"{self.depth} at {_name(node)}")
            if self._pending_ns > limits.max_namespace_declarations_per_element:
                raise LimitExceeded(
                    "max_namespace_declarations_per_element",
                    limits.max_namespace_declarations_per_element,
                    f"{self._pending_ns} on {_name(node)}",
                )
            self._pending_ns = 0
            attributes = len(node.attrib)
            if attributes > limits.max_attributes_per_element:
                raise LimitExceeded(
                    "max_attributes_per_element",
                    limits.max_attributes_per_element,
                    f"{attributes} on {_name(node)}",
                )
            return
        if kind == "end":
            self.depth -= 1
            self._add_text(node.text, node)
            self._ended = node
            return
        # A comment or processing instruction: a node, and its tail is text.
        self._count_node(node)
        self._ended = node

    def _count_node(self, node: Any) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_elements:
            raise LimitExceeded(
                "max_elements",
                self.limits.max_elements,
                f"more than {self.limits.max_elements} elements, comments and "
                "processing instructions",
            )

    def _add_text(self, text: str | None, node: Any) -> None:
        if text:
            self.text += len(text)
            if self.text > self.limits.max_text_chars:
                raise LimitExceeded(
                    "max_text_chars",
                    self.limits.max_text_chars,
                    f"more than {self.limits.max_text_chars} characters of text "
                    f"(reached in {_name(node)})",
                )


def _name(node: Any) -> str:
    tag = getattr(node, "tag", None)
    if isinstance(tag, str):
        return "<" + tag.rsplit("}", 1)[-1][:60] + ">"
    return "a comment or processing instruction"


# -- CPU per case ---------------------------------------------------------------------------


class CpuBudgetExceeded(BaseException):
    """Raised into the main thread when a case's CPU budget is spent.

    A ``BaseException``: a check's ``except Exception`` must not swallow it and go on
    spending. Only ``cpu_budget`` (and the engine around it) catches it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"exceeds limits.case_cpu_s ({seconds:g}): {seconds:g} s of CPU spent, not done"
        )


@dataclass
class _Armed:
    seconds: float
    paused_left: float | None = None


_armed: list[_Armed] = []


def _on_sigprof(signum: int, frame: Any) -> None:
    if _armed and _armed[-1].paused_left is None:
        raise CpuBudgetExceeded(_armed[-1].seconds)


def budget_enforced() -> bool:
    """Whether ``cpu_budget`` can stop work here: only the main thread receives signals."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Run the block with at most ``seconds`` of process CPU time (``ITIMER_PROF``);
    past it ``CpuBudgetExceeded`` is raised where the block is, even inside a pure-Python
    validator. Off the main thread (no signals there) the block runs unbounded and
    ``checkpoint`` bounds it cooperatively between steps.

    The timer and the previous SIGPROF handler are restored on every way out, so a budget
    hit leaves nothing armed for the next case.
    """
    if not budget_enforced():
        stack = _cooperative_stack()
        stack.append((time.thread_time(), seconds))
        try:
            yield
        finally:
            stack.pop()
        return
    previous = signal.signal(signal.SIGPROF, _on_sigprof)
    old_timer = signal.setitimer(signal.ITIMER_PROF, 0)
    _armed.append(_Armed(seconds))
    try:
        signal.setitimer(signal.ITIMER_PROF, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        _armed.pop()
        signal.signal(signal.SIGPROF, previous)
        if old_timer[0] > 0:
            signal.setitimer(signal.ITIMER_PROF, *old_timer)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Stop the CPU clock of the current budget (an exchange: the network has its own
    deadline, and an exception inside the HTTP client would leave a connection half used)."""
    if not _armed or not budget_enforced():
        yield
        return
    armed = _armed[-1]
    left, _ = signal.setitimer(signal.ITIMER_PROF, 0)
    armed.paused_left = left
    try:
        yield
    finally:
        armed.paused_left = None
        signal.setitimer(signal.ITIMER_PROF, max(left, 0.001))


_thread_state = threading.local()


def _cooperative_stack() -> list[tuple[float, float]]:
    stack: list[tuple[float, float]] | None = getattr(_thread_state, "stack", None)
    if stack is None:
        stack = _thread_state.stack = []
    return stack


def checkpoint() -> None:
    """Off the main thread: raise ``CpuBudgetExceeded`` if the budget is already spent."""
    stack = _cooperative_stack()
    if stack:
        started, seconds = stack[-1]
        if time.thread_time() - started > seconds:
            raise CpuBudgetExceeded(seconds)
