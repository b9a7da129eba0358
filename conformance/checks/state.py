"""Checks of the UE key state across the steps of a case (conformance/protection/uestate.py).

The engine judges every step with the keys the UE holds at that step; these checks say
what a rotation changed: the KMS "shall use the TrK currently residing in the MC UE"
(D.3.1 as changed by the seed CR), a request naming the TrK held before a rotation is
answered under that TrK or refused (REQ-129, as the profile says), and key sets of
different key periods carry different RSKs (RFC 6508 6.1.1: the RSK is a function of the
UID). The engine puts the keys the UE held before the last change of the case in
``ctx.params["ue_previous"]`` (a ``conformance.target.file.User``, or None).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from conformance.checks.base import (
    CheckContext,
    Finding,
    case_responses,
    check,
    key_octets,
    key_sets,
    ok,
    shorten,
    skipped,
    user_id_octets,
    violation,
)
from conformance.checks.security_support import (
    encrypted_facts,
    known_facts,
    trk_id_names_another_key,
)
from conformance.checks.verify import verifies
from conformance.protection.response import NEW_KEY_ELEMENTS, ProtectionFacts, unprotect
from conformance.target.file import User

PREVIOUS = "ue_previous"


@check("state.trk-current")
def trk_current(ctx: CheckContext) -> Finding:
    """After a TrK rotation the response is protected with, and names, the new TrK."""
    previous = _previous(ctx)
    held = ctx.user.trk if ctx.user is not None else None
    if previous is None or previous.trk == held or held is None:
        return skipped("the UE's TrK has not changed in this case")
    facts = encrypted_facts(ctx)
    if isinstance(facts, Finding):
        return facts
    old = previous.trk
    assert old is not None
    expected = f"the TrK the UE holds now ({held.key_id_b64})"
    if not _opens(facts):
        if ctx.raw is not None and _opens(unprotect(ctx.raw, previous, ctx.profile)[1]):
            return violation(
                f"encrypted with the TrK the UE held before the rotation ({old.key_id_b64}), "
                "not with the new TrK it delivered",
                expected,
                f"the old TrK {old.key_id_b64}",
            )
        return violation("does not decrypt with the TrK the UE holds", expected, "another key")
    if facts.trk_id is not None and facts.trk_id != held.key_id:
        named = "the old TrK" if facts.trk_id == old.key_id else "another key"
        return trk_id_names_another_key(facts, f"names {named}, not the TrK the UE holds", expected)
    return ok(f"protected with and naming the new TrK ({held.key_id_b64})")


@check("state.delivery-protection")
@verifies(known_facts)
def delivery_protection(ctx: CheckContext, facts: ProtectionFacts) -> Finding:
    """The response delivering a new key is protected with the keys the UE could use then."""
    wanted = ctx.params.get("delivers") or ()
    visible = any(k.element in NEW_KEY_ELEMENTS for k in facts.wrapped_keys)
    if not wanted and not visible:
        return skipped("the response delivers no new key")
    mode = ctx.profile.delivering_response_keys
    encryption = facts.encryption
    if encryption is not None and encryption.key_available and not encryption.decrypted:
        return violation(
            "the response meant to deliver a new key does not decrypt with the TrK the UE "
            f"holds, so the UE cannot read it: {encryption.error}",
            "encrypted under the TrK the UE held before the delivery",
            "another key",
        )
    signature = facts.signature
    keys = [k for k in ("ink", "trk") if getattr(ctx.user, k, None) is not None]
    if signature is not None and keys:
        wanted_key = keys[0]
        if wanted_key not in signature.verified_with():
            which = "delivered InK" if mode == "delivered" else "keys the UE held before it"
            return violation(
                f"the delivering response's signature does not verify with the {which}",
                f"signed with the {wanted_key.upper().replace('INK', 'InK').replace('TRK', 'TrK')}"
                f" of profile setting delivering_response_keys = {mode}",
                "another key",
            )
    if not visible:
        return skipped("the response delivers no new key (it may: D.3.1)")
    return ok(f"the delivering response is protected as the UE can read it ({mode} keys)")


@check("state.old-trk-id")
def old_trk_id(ctx: CheckContext) -> Finding:
    """A request naming the TrK held before a rotation is served under it, or refused."""
    previous = _previous(ctx)
    if previous is None or previous.trk is None or ctx.user is None or ctx.user.trk is None:
        return skipped("the UE's TrK has not changed in this case")
    named = str((ctx.params.get("fields") or {}).get("TrK-ID", ""))
    if named != previous.trk.key_id_b64:
        return skipped("the request does not name the TrK held before the rotation")
    mode = ctx.profile.old_trk_id_after_rotation
    status = ctx.http.status if ctx.http else 0
    expected = {
        "either": "served under the TrK the request names, or a KmsError",
        "served": "served under the TrK the request names",
        "refused": "a 4xx KmsError",
    }[mode]
    if 400 <= status < 500:
        refused = ctx.raw is not None and ctx.raw.kms_error is not None
        if mode == "served":
            return violation(f"refused with HTTP {status}", expected, f"HTTP {status}")
        if not refused:
            return violation(f"HTTP {status} without a KmsError", expected, f"HTTP {status}")
        return ok(f"refused with HTTP {status} and a KmsError ({mode})")
    if status != 200 or ctx.raw is None:
        return violation(f"HTTP {status}", expected, f"HTTP {status}")
    if mode == "refused":
        return violation("served although the profile wants it refused", expected, "HTTP 200")
    old_facts = unprotect(ctx.raw, previous, ctx.profile)[1]
    if not old_facts.encrypted:
        return skipped("the answer is not encrypted: which TrK it used cannot be seen")
    if _opens(old_facts) and old_facts.trk_id in (None, previous.trk.key_id):
        return ok(f"served under the TrK the request names ({previous.trk.key_id_b64})")
    return violation(
        "served, but not under the TrK the request's TrK-ID names",
        expected,
        f"TrK-ID {shorten(old_facts.trk_id_text)}",
    )


@check("state.rsks-differ")
def rsks_differ(ctx: CheckContext) -> Finding:
    """Key sets with different UIDs (other key periods) carry different RSKs."""
    sets: dict[bytes, tuple[str, bytes]] = {}
    for response in case_responses(ctx):
        for key_set in key_sets(response):
            user_id, rsk = user_id_octets(key_set), key_octets(key_set, "UserDecryptKey")
            if user_id is not None and rsk is not None:
                sets.setdefault(user_id, (key_set.get("KeyPeriodNo") or "?", rsk))
    if len(sets) < 2:
        return skipped("fewer than two key sets with different UserIDs")
    for (_, (period_a, rsk_a)), (_, (period_b, rsk_b)) in combinations(sets.items(), 2):
        if rsk_a == rsk_b:
            return violation(
                f"the same RSK for two UserIDs (key periods {period_a} and {period_b}): "
                "at most one of them can be the RSK of its UID",
                "one RSK per UID",
                "the same RSK",
            )
    return ok(f"{len(sets)} UserIDs, {len(sets)} different RSKs")


# -- helpers ----------------------------------------------------------------------------


def _previous(ctx: CheckContext) -> User | None:
    value: Any = ctx.params.get(PREVIOUS)
    return value if isinstance(value, User) else None


def _opens(facts: ProtectionFacts) -> bool:
    """Everything encrypted in the response opens with the key it was judged with."""
    if facts.encryption is not None and not facts.encryption.decrypted:
        return False
    return all(k.unwrapped for k in facts.wrapped_keys if k.has_encrypted_key)
