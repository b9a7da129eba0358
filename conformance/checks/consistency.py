"""Checks that compare the steps of one case: RFC 6508 6.1.1 (RSK determinism), Annex F
(distinct UIDs), D.3.2 (a stable Root certificate) and D.2 (certcache numbering).

They run on the last step and read the earlier ones from ``CheckContext.history``: each
item has ``.response`` (the plaintext ``KmsResponse`` or None) and ``.params`` (the step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import combinations
from urllib.parse import unquote

from conformance.checks.base import (
    CheckContext,
    Finding,
    case_responses,
    check,
    content_name,
    key_octets,
    key_sets,
    message_content,
    ok,
    root_certificate,
    shorten,
    skipped,
    user_id_octets,
    violation,
)
from conformance.checks.values import parse_int
from conformance.checks.verify import present, verifies
from conformance.model.messages import (
    KmsCertCache,
    KmsKeySet,
)

CERTIFICATE_IDENTITY = ("CertUri", "KmsUri", "PubEncKey", "PubAuthKey")


def _sent_cache_number(ctx: CheckContext) -> int | Finding:
    """The CacheNum the step's certcache/<number> sent (a guard of consistency.cachenum)."""
    # "number: current" is resolved by the probe inside the step, so the path tells.
    path = str(ctx.params.get("request_path") or "")
    head, _, number = path.rstrip("/").rpartition("/")
    sent = parse_int(unquote(number)) if head.endswith("/certcache") else None
    return present(sent, "the step sent no cache number")


@check("consistency.rsk-stable")
def rsk_stable(ctx: CheckContext) -> Finding:
    """Two key sets for the same identity and key period carry the same RSK."""
    return _same_across_steps(ctx, "UserDecryptKey", _rsk_octets)


@check("consistency.uid-stable")
def uid_stable(ctx: CheckContext) -> Finding:
    """Two key sets for the same identity and key period carry the same UserID."""
    return _same_across_steps(ctx, "UserID", _user_id)


@check("consistency.uids-differ")
def uids_differ(ctx: CheckContext) -> Finding:
    """Key sets for different identities or key periods carry different UserIDs."""
    pairs = 0
    for (key_a, set_a), (key_b, set_b) in combinations(_labelled_key_sets(ctx), 2):
        if key_a == key_b:
            continue
        uid_a, uid_b = _user_id(set_a), _user_id(set_b)
        if uid_a is None or uid_b is None:
            continue
        pairs += 1
        if uid_a == uid_b:
            return violation(
                f"the same UserID for {_describe(key_a)} and {_describe(key_b)}",
                "different UserIDs",
                uid_a.hex(),
            )
    if not pairs:
        return skipped("no two key sets for different identities or periods")
    return ok(f"UserIDs differ ({pairs} pair(s) compared)")


@check("consistency.cert-stable")
def cert_stable(ctx: CheckContext) -> Finding:
    """Every KMS Initialize of the case returns the same Root certificate."""
    certificates = [c for r in case_responses(ctx) if (c := root_certificate(r)) is not None]
    if len(certificates) < 2:
        return skipped("fewer than two Root certificates to compare")
    first = certificates[0]
    for later in certificates[1:]:
        for name in CERTIFICATE_IDENTITY:
            if _normalized(first.get(name)) != _normalized(later.get(name)):
                return violation(
                    f"the Root certificate's {name} changed between calls",
                    shorten(first.get(name)),
                    shorten(later.get(name)),
                )
    return ok(f"the same Root certificate in {len(certificates)} responses")


@check("consistency.cachenum")
@verifies(_sent_cache_number)
def cache_num(ctx: CheckContext, sent: int) -> Finding:
    """certcache/<current CacheNum> answers a cache with the same or a newer CacheNum."""
    cache = message_content(ctx, KmsCertCache)
    if cache is None:
        return violation(
            f"certcache/{sent} answered without KmsCertCache", "KmsCertCache", content_name(ctx)
        )
    reported = parse_int(cache.attr("CacheNum"))
    if reported is None or reported < sent:
        return violation(
            f"certcache/{sent} reports an older or no CacheNum",
            f">= {sent}",
            shorten(cache.attr("CacheNum")),
        )
    return ok(f"certcache/{sent} reports CacheNum {reported}")


# -- helpers ----------------------------------------------------------------------------

_Label = tuple[str | None, int | None]


def _same_across_steps(
    ctx: CheckContext, what: str, value: Callable[[KmsKeySet], bytes | None]
) -> Finding:
    compared = 0
    seen: dict[_Label, tuple[int, bytes]] = {}
    for step, (label, key_set) in _stepped_key_sets(ctx):
        current = value(key_set)
        if current is None:
            continue
        earlier = seen.get(label)
        if earlier is None:
            seen[label] = (step, current)
            continue
        if earlier[0] == step:
            continue
        compared += 1
        if earlier[1] != current:
            return violation(
                f"{what} differs between two calls for {_describe(label)}",
                earlier[1].hex()[:32] + "...",
                current.hex()[:32] + "...",
            )
    if not compared:
        return skipped(f"no two calls for the same identity and period to compare {what}")
    return ok(f"{what} identical across calls ({compared} comparison(s))")


def _stepped_key_sets(ctx: CheckContext) -> Iterator[tuple[int, tuple[_Label, KmsKeySet]]]:
    for step, response in enumerate(case_responses(ctx)):
        for key_set in key_sets(response):
            label = (key_set.get("UserUri"), parse_int(key_set.get("KeyPeriodNo")))
            yield step, (label, key_set)


def _labelled_key_sets(ctx: CheckContext) -> list[tuple[_Label, KmsKeySet]]:
    return [entry for _, entry in _stepped_key_sets(ctx)]


def _rsk_octets(key_set: KmsKeySet) -> bytes | None:
    return key_octets(key_set, "UserDecryptKey") or None


def _user_id(key_set: KmsKeySet) -> bytes | None:
    """The UserID's octets; a UserID that does not decode is compared as written."""
    text = key_set.get("UserID")
    decoded = user_id_octets(key_set)
    if decoded is None and text is not None:
        return text.strip().encode("utf-8")
    return decoded


def _normalized(value: str | None) -> str | None:
    return None if value is None else "".join(value.split()).lower()


def _describe(label: _Label) -> str:
    user, period = label
    return f"{user or '(no UserUri)'} period {period if period is not None else '?'}"
