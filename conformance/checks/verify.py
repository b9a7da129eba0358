"""The verifier shape the checks share (after h2spec's shared verifiers).

A check is a guard and a verifier: the guard finds what the check judges (the signature,
the HTTP answer, the certificate's key) or says why there is nothing to judge (a
``Finding``, usually skipped); the verifier judges it. ``verifies`` joins the two so a
check states its subject once instead of repeating the guard's three lines; the guards
used in more than one module live here. A check of many items (the certificates of a
response, its key sets) is a rule on one item: ``Items.every`` makes it a check that
reports the first item the rule finds a problem in. May import: checks.base, exchange,
model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from conformance.checks.base import (
    CheckContext,
    CheckFunction,
    Finding,
    content_name,
    first_violation,
    message_content,
    skipped,
    violation,
)
from conformance.core.exchange import Exchange
from conformance.model.messages import Node

_T = TypeVar("_T")
_N = TypeVar("_N", bound=Node)

Verifier = Callable[[CheckContext, _T], Finding]
Rule = Callable[[_T], str | None]
ItemRule = Callable[[CheckContext, _T], str | None]


def verifies(
    guard: Callable[..., _T | Finding], *arguments: object
) -> Callable[[Verifier[_T]], CheckFunction]:
    """Run ``guard(ctx, *arguments)``; a Finding is the check's answer, else verify its result."""

    def join(verifier: Verifier[_T]) -> CheckFunction:
        @functools.wraps(verifier)
        def check_function(ctx: CheckContext) -> Finding:
            subject = guard(ctx, *arguments)
            if isinstance(subject, Finding):
                return subject
            return verifier(ctx, subject)

        return check_function

    return join


@dataclass(frozen=True)
class Items(Generic[_T]):
    """Items some checks judge one at a time: where a response has them (``find``) and how
    a violation names one (``label(items, index, item)``, index from 1)."""

    find: Callable[[CheckContext], Sequence[_T]]
    label: Callable[[Sequence[_T], int, _T], str]
    noun: str

    def judge(self, ctx: CheckContext, rule: Rule[_T], summary: str) -> Finding:
        """``rule`` on each item; the first problem is the violation, else ok ``summary``."""
        items = self.find(ctx)

        def label(index: int, item: _T) -> str:
            return self.label(items, index, item)

        return first_violation(items, rule, label, self.noun, summary)

    def every(self, summary: str) -> Callable[[ItemRule[_T]], CheckFunction]:
        """Declare a check as its rule on one item, ``rule(ctx, item)`` (see ``judge``)."""

        def join(rule: ItemRule[_T]) -> CheckFunction:
            @functools.wraps(rule)
            def check_function(ctx: CheckContext) -> Finding:
                return self.judge(ctx, functools.partial(rule, ctx), summary)

            return check_function

        return join


def answered(ctx: CheckContext) -> Exchange | Finding:
    """The step's HTTP exchange, if the KMS answered it."""
    exchange = ctx.exchange
    if exchange is None:
        return skipped("no HTTP exchange recorded (offline)")
    if not exchange.answered:
        return skipped(f"no HTTP answer: {exchange.error}")
    return exchange


def successful(ctx: CheckContext) -> Exchange | Finding:
    """The step's HTTP exchange, if the KMS answered it with 2xx."""
    exchange = answered(ctx)
    if isinstance(exchange, Finding):
        return exchange
    assert exchange.status is not None  # answered() says so
    if not 200 <= exchange.status < 300:
        return skipped(f"HTTP {exchange.status}: not a successful response")
    return exchange


def present(value: _T | None, absent: str) -> _T | Finding:
    """``value``, or skipped with the reason ``absent`` when there is none."""
    return skipped(absent) if value is None else value


def content_of(ctx: CheckContext, kind: type[_T]) -> _T | Finding:
    """The child of KmsMessage of model type ``kind``, or skipped "no <kind>"."""
    return present(message_content(ctx, kind), f"no {kind.__name__}")


def versioned(ctx: CheckContext, kind: type[_N], fixed: str) -> _N | Finding:
    """The child of KmsMessage of model type ``kind`` (skipped without one) if its @Version
    is the profile's, or ``fixed`` (the schema's) where the profile names none; absent
    means that value. Another Version is a violation."""
    content = content_of(ctx, kind)
    if isinstance(content, Finding):
        return content
    name = kind.__name__
    wanted = ctx.profile.expected_versions.get(name, fixed)
    got = content.attr("Version")
    if got is not None and got != wanted:
        return violation(f"{name} has the wrong Version", wanted, got)
    return content


def carries(ctx: CheckContext, kind: type[_T]) -> _T | Finding:
    """The child of KmsMessage of model type ``kind``; its absence is a violation (for the
    checks whose rule is that the response carries it)."""
    content = message_content(ctx, kind)
    if content is None:
        name = kind.__name__
        return violation(f"no {name} in the response", name, content_name(ctx))
    return content


def response_field(ctx: CheckContext, name: str, expected: str) -> str | Finding:
    """The text of KmsResponse's attribute ``name``; missing is a violation against ``expected``."""
    if ctx.raw is None:
        return skipped("no KmsResponse")
    value = ctx.raw.get(name)
    if value is None:
        return violation(f"{name} is missing", expected, "(absent)")
    return value
