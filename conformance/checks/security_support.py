"""What the security checks share: the protection facts of a response, the guards that
find a signature or an encryption to judge, and the helpers that name keys and claims.

Split from checks/security.py (issue 17) so that the checks module holds checks only.
May import: checks.base, checks.verify, checks.envelope, protection, model, target, crypto.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from typing import TypeVar

from conformance.checks.base import (
    CheckContext,
    Finding,
    first_violation,
    shorten,
    skipped,
    violation,
)
from conformance.checks.envelope import EXPECTED_CONTENT, profile_schema_errors
from conformance.checks.verify import Verifier, present
from conformance.model.messages import KmsKeyProv, KmsResponse
from conformance.protection.response import (
    EncryptionFacts,
    ProtectionFacts,
    SignatureFacts,
    WrappedKeyFacts,
    unprotect,
)
from conformance.target.file import SymmetricKey
from conformance.verdicts.outcomes import Outcome
from conformance.xmlsec import xmldsig, xmlenc

_T = TypeVar("_T")

KEY_LABELS = {"ink": "InK", "trk": "TrK"}
NEW_KEY_MESSAGE_TYPES = {"KmsInit": "KmsInitTkIkType", "KmsKeyProv": "KmsKeyProvTkIkType"}
RFC3394_WRAPS = (xmlenc.KW_AES128, xmlenc.KW_AES192, xmlenc.KW_AES256)
GCM_OVERHEAD_OCTETS = xmlenc.GCM_IV_OCTETS + xmlenc.GCM_TAG_OCTETS
HMAC_SHA256_OCTETS = xmldsig.HMAC_SHA256_BITS // 8
NOT_SIGNED = "the response is not signed"
NOT_ENCRYPTED = "KmsMessage is not encrypted"


def known_facts(ctx: CheckContext) -> ProtectionFacts | Finding:
    facts = protection_facts(ctx)
    return skipped("no KmsResponse") if facts is None else facts


def signature_facts(ctx: CheckContext) -> SignatureFacts | Finding:
    facts = known_facts(ctx)
    return facts if isinstance(facts, Finding) else present(facts.signature, NOT_SIGNED)


def encryption_facts(ctx: CheckContext) -> EncryptionFacts | Finding:
    facts = known_facts(ctx)
    return facts if isinstance(facts, Finding) else present(facts.encryption, NOT_ENCRYPTED)


def encrypted_facts(ctx: CheckContext) -> ProtectionFacts | Finding:
    """The protection facts of a response in which something is encrypted."""
    facts = protection_facts(ctx)
    if facts is None or not facts.encrypted:
        return skipped("nothing in the response is encrypted")
    return facts


def with_key_id_element(element: str) -> Callable[[Verifier[_T]], Verifier[_T]]:
    """A verifier that judges only in a profile with the TrK-ID/Signature-ID elements; in
    another it skips, saying the ``element`` it would have judged is not there."""

    def join(verifier: Verifier[_T]) -> Verifier[_T]:
        @functools.wraps(verifier)
        def judged(ctx: CheckContext, subject: _T) -> Finding:
            if not ctx.profile.has_trk_id_elements:
                return skipped(f"profile {ctx.profile.name} has no {element} element")
            return verifier(ctx, subject)

        return judged

    return join


# -- helpers ----------------------------------------------------------------------------

EXPECTED_CONTENT_NAMES = sorted({kind.__name__ for kind in EXPECTED_CONTENT.values()})
_UNPROTECTED_MEMO = "security.unprotect"


def protection_facts(ctx: CheckContext) -> ProtectionFacts | None:
    if isinstance(ctx.protection, ProtectionFacts):
        return ctx.protection
    return computed(ctx)[1]


def protection_view(ctx: CheckContext) -> KmsResponse | None:
    if isinstance(ctx.protection, ProtectionFacts):
        return ctx.response
    return computed(ctx)[0]


def computed(ctx: CheckContext) -> tuple[KmsResponse | None, ProtectionFacts | None]:
    if ctx.raw is None:
        return ctx.response, None
    if _UNPROTECTED_MEMO not in ctx.memo:
        ctx.memo[_UNPROTECTED_MEMO] = unprotect(ctx.raw, ctx.user, ctx.profile)
    view, facts = ctx.memo[_UNPROTECTED_MEMO]
    return view, facts


def user_keys(ctx: CheckContext) -> dict[str, SymmetricKey]:
    user = ctx.user
    if user is None:
        return {}
    return {name: key for name, key in (("ink", user.ink), ("trk", user.trk)) if key is not None}


def key_called(keys: dict[str, SymmetricKey], key_id: bytes) -> str | None:
    return next((name for name, key in keys.items() if key.key_id == key_id), None)


def named_key(facts: ProtectionFacts, signature: SignatureFacts) -> tuple[bytes | None, str]:
    if facts.signature_id is not None:
        return facts.signature_id, "Signature-ID"
    return signature.key_name_id, "ds:KeyName"


def held(keys: dict[str, SymmetricKey]) -> str:
    return ", ".join(f"{KEY_LABELS[name]}-ID {key.key_id_b64}" for name, key in keys.items())


def b64(data: bytes) -> str:
    return shorten(base64.b64encode(data).decode("ascii"))


def not_a_message(ctx: CheckContext) -> str | None:
    status = ctx.http.status if ctx.http else ctx.exchange.status if ctx.exchange else None
    if status is not None and not 200 <= status < 300:
        return f"HTTP {status}: not a successful response"
    if ctx.raw is None or ctx.raw.kms_message is None:
        return "no KmsMessage (error or empty response): nothing the KMS protects"
    if ctx.raw.kms_error is not None:
        return "KmsError response"
    return None


def claimed_protection(signing: bool, encryption: str) -> str:
    parts = ["signed" if signing else "not necessarily signed"]
    parts.append({"message": "message encrypted", "keys": "keys wrapped"}.get(encryption, ""))
    return ", ".join(p for p in parts if p)


def keys_in_clear(ctx: CheckContext) -> list[str]:
    view = protection_view(ctx)
    content = view.kms_message.content if view and view.kms_message else None
    if not isinstance(content, KmsKeyProv):
        return []
    clear = []
    for index, key_set in enumerate(content.key_sets, start=1):
        for name, key in key_set.keys.items():
            typed = key.xsi_type is not None and key.xsi_type.local == "EncKeyContentType"
            if not typed or key.encrypted_key is None:
                clear.append(f"KmsKeySet[{index}]/{name}")
    return clear


def trk_id_without_encryption_accepted(ctx: CheckContext) -> bool:
    # A KMS that wraps keys one by one may name its TrK in every response, also in those
    # that carry no key (KmsInit, KmsCertCache): accepted when that is what it claims.
    return ctx.target is not None and ctx.target.pics.encryption == "keys"


def trk_id_names_another_key(facts: ProtectionFacts, named: str, expected: str) -> Finding:
    """The violation of a TrK-ID element that names a key other than ``expected``; ``named``
    says which."""
    text = shorten(facts.trk_id_text)
    return violation(f"TrK-ID {text} {named}", expected, text)


def unbacked_claim(ctx: CheckContext, facts: ProtectionFacts) -> str | None:
    if facts.signature_id_text is not None and facts.signature is None:
        return "Signature-ID present although the response is not signed"
    if (
        facts.trk_id_text is not None
        and not facts.encrypted
        and not trk_id_without_encryption_accepted(ctx)
    ):
        return "TrK-ID present although nothing in the response is encrypted"
    return None


def claim_failure(ctx: CheckContext, facts: ProtectionFacts) -> str | None:
    keys = user_keys(ctx)
    if facts.signature_id_text is not None:
        if facts.signature_id is None:
            return f"Signature-ID is not a base64 key ID: {facts.signature_id_error}"
        name = key_called(keys, facts.signature_id)
        signature = facts.signature
        if name is not None and signature is not None:
            result = signature.verifications[name]
            if not result.ok:
                return (
                    f"Signature-ID names the {KEY_LABELS[name]}, but the signature does not "
                    f"verify with it: {result.message}"
                )
    if facts.trk_id_text is not None:
        if facts.trk_id is None:
            return f"TrK-ID is not a base64 key ID: {facts.trk_id_error}"
        encryption = facts.encryption
        if encryption is not None and encryption.key_available and not encryption.decrypted:
            return f"TrK-ID is present, but KmsMessage does not decrypt: {encryption.error}"
        for key in facts.wrapped_keys:
            if key.key_available and key.has_encrypted_key and not key.unwrapped:
                return f"TrK-ID is present, but {key.location} {key.error}"
    return None


def plaintext_schema_problem(ctx: CheckContext) -> str | None:
    view = protection_view(ctx)
    if view is None:
        return None
    document = view.root if view.root is not None else view.element
    namespace = view.namespace if ctx.profile.namespace_configurable else None
    for path, reason in profile_schema_errors(ctx.profile, namespace, document):
        if "/KmsMessage/" in path + "/":
            return f"{path}: {reason}"
    return None


def no_keys_reason(ctx: CheckContext, default: str) -> str:
    facts = protection_facts(ctx)
    encryption = facts.encryption if facts else None
    if encryption is not None and not encryption.decrypted:
        return "KmsMessage is encrypted and was not decrypted: its keys cannot be read"
    return default


def wrapped_keys_finding(
    ctx: CheckContext,
    keys: list[WrappedKeyFacts],
    noun: str,
    extra_rule: Callable[[WrappedKeyFacts], str | None],
) -> Finding:
    accepted = ctx.profile.key_wrap_algorithms

    def rule(key: WrappedKeyFacts) -> str | None:
        problem = extra_rule(key) or wrap_problem(key, accepted)
        if problem is None and key.key_available:
            return unwrap_problem(key)
        return problem

    finding = first_violation(
        keys, rule, lambda _, key: key.location, noun, "wrapped under the TrK"
    )
    if finding.outcome is Outcome.OK and not all(k.key_available for k in keys):
        return skipped("wrap algorithms accepted; not unwrapped: no TrK for this user")
    return finding


def wrap_problem(key: WrappedKeyFacts, accepted: tuple[str, ...]) -> str | None:
    if not key.has_encrypted_key:
        return "EncKeyContentType without an xenc:EncryptedKey"
    algorithm = key.algorithm
    if algorithm not in accepted:
        return f"key wrap algorithm {shorten(algorithm)} is not an accepted AES key wrap"
    expected = key.expected_octets
    if algorithm in RFC3394_WRAPS and expected is not None and expected % 8:
        return (
            f"{algorithm.rpartition('#')[2]} (RFC 3394) cannot carry a {expected}-octet key; "
            "the -pad variant (RFC 5649) is needed"
        )
    return None


def unwrap_problem(key: WrappedKeyFacts) -> str | None:
    if not key.unwrapped:
        return key.error or "does not unwrap with the TrK"
    if key.expected_octets is not None and key.unwrapped_octets != key.expected_octets:
        return f"unwraps to {key.unwrapped_octets} octets, expected {key.expected_octets}"
    return None
