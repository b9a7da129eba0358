"""Preflight: tell a misconfigured target from a non-conformant KMS before any case runs.

One KMS Initialize with user 1's valid credential. When it cannot be a fair start, the
run stops with exit 2 and one line instead of writing a ``fail`` for every case:

* no answer at all: connection refused, unknown host, no response before the timeout
  ("init unreachable");
* TLS failure: the certificate does not verify or names another host (the TLS reason);
* HTTP 404 on the init path: ``target.base_url`` has the wrong path;
* HTTP 401 or 403 to the configured valid credential: every token (or identity) refused.

The rule is kept narrow on purpose: any other answer, a KmsError 400 or 500 included, is
a real answer of the KMS and is judged by the cases.
"""

from __future__ import annotations

from conformance.core.exchange import Exchange
from conformance.profiles import get_profile
from conformance.target.file import Target


class TargetMisconfigured(Exception):
    """The target cannot be tested as configured; the message is one line (exit 2)."""


def preflight(target: Target) -> None:
    """Send one KMS Initialize; raise ``TargetMisconfigured`` when the target is unusable."""
    from conformance.probe.sender import MissingInput, PreconditionFailed, Probe

    profile = get_profile(target.profile.release)
    try:
        with Probe(target, profile) as probe:
            exchange = probe.send({"request": "init"}, "preflight")
    except (MissingInput, PreconditionFailed):
        return  # the cases say what is missing, each with its own verdict
    problem = diagnose(target, exchange)
    if problem is not None:
        raise TargetMisconfigured(f"{target.path}: {problem}")


def diagnose(target: Target, exchange: Exchange) -> str | None:
    """Why the init exchange shows a misconfigured target, or None when it is an answer."""
    base = target.target.base_url
    # A timeout counts only when nothing came back: a KMS that starts answering and then
    # stalls is a KMS answering badly, and its cases say so.
    silent = exchange.error_kind == "timeout" and exchange.status is None
    if exchange.error is not None and (exchange.error_kind == "connect" or silent):
        return f"target.base_url {base}: init unreachable: {exchange.error}"
    if exchange.error is not None and exchange.error_kind == "tls":
        return f"target.base_url {base}: init over TLS failed: {exchange.error}"
    status = exchange.status
    if status == 404:
        return (
            f"target.base_url {base} answers 404 for init ({exchange.request.url}): check the path"
        )
    if status in (401, 403):
        return (
            f"target.base_url {base}: init with the valid credential of users[0] "
            f"({target.users[0].uri}) is refused with HTTP {status}: every token would be "
            "refused; check the token (issuer, audience, scope, expiry) or the identity header"
        )
    return None
