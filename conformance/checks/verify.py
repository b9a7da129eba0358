"""The verifier shape the checks share (after h2spec's shared verifiers).

A check is a guard and a verifier: the guard finds what the check judges (the signature,
the HTTP answer, the certificate's key) or says why there is nothing to judge (a
``Finding``, usually skipped); the verifier judges it. ``verifies`` joins the two so a
check states its subject once instead of repeating the guard's three lines; the guards
used in more than one module live here. May import: checks.base, exchange.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from conformance.checks.base import (
    CheckContext,
    CheckFunction,
    Finding,
    content_name,
    message_content,
    skipped,
    violation,
)
from conformance.exchange import Exchange

_T = TypeVar("_T")

Verifier = Callable[[CheckContext, _T], Finding]


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
