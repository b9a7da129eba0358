"""Security checks: the InK/TrK signature and TrK encryption of responses (D.1, D.3.1).

The security step (``conformance.protection.unprotect``) has already verified, decrypted
and unwrapped what it could and recorded it in ``ProtectionFacts``; each check here judges
one rule on those facts. When a context carries no facts (a check run on its own), they
are computed from ``ctx.raw`` once and kept in ``ctx.memo``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from conformance.checks.base import (
    CheckContext,
    Finding,
    check,
    first_violation,
    ok,
    shorten,
    skipped,
    violation,
)
from conformance.checks.envelope import EXPECTED_CONTENT, profile_schema_errors
from conformance.checks.verify import present, verifies
from conformance.crypto import xmldsig, xmlenc
from conformance.model import KmsKeyProv, KmsResponse
from conformance.protection import (
    NEW_KEY_ELEMENTS,
    EncryptionFacts,
    ProtectionFacts,
    SignatureFacts,
    WrappedKeyFacts,
    unprotect,
)
from conformance.target import SymmetricKey
from conformance.verdicts import Outcome, Strength

KEY_LABELS = {"ink": "InK", "trk": "TrK"}
NEW_KEY_MESSAGE_TYPES = {"KmsInit": "KmsInitTkIkType", "KmsKeyProv": "KmsKeyProvTkIkType"}
RFC3394_WRAPS = (xmlenc.KW_AES128, xmlenc.KW_AES192, xmlenc.KW_AES256)
GCM_OVERHEAD_OCTETS = xmlenc.GCM_IV_OCTETS + xmlenc.GCM_TAG_OCTETS
HMAC_SHA256_OCTETS = xmldsig.HMAC_SHA256_BITS // 8
NOT_SIGNED = "the response is not signed"
NOT_ENCRYPTED = "KmsMessage is not encrypted"


# -- guards (used by @verifies, so defined before the checks) -----------------------


def _known_facts(ctx: CheckContext) -> ProtectionFacts | Finding:
    facts = _facts(ctx)
    return skipped("no KmsResponse") if facts is None else facts


def _signature(ctx: CheckContext) -> SignatureFacts | Finding:
    facts = _known_facts(ctx)
    return facts if isinstance(facts, Finding) else present(facts.signature, NOT_SIGNED)


def _encryption(ctx: CheckContext) -> EncryptionFacts | Finding:
    facts = _known_facts(ctx)
    return facts if isinstance(facts, Finding) else present(facts.encryption, NOT_ENCRYPTED)


@check(
    "security.expected-protection",
    reqs=("REQ-061", "REQ-062", "REQ-124"),
    clause="D.3.1, seed CR",
)
def expected_protection(ctx: CheckContext) -> Finding:
    """The response is protected the way the KMS claims (PICS signing and encryption)."""
    if ctx.target is None:
        return skipped("no target file: the protection the KMS claims (PICS) is unknown")
    facts = _facts(ctx)
    reason = _not_a_message(ctx)
    if facts is None or reason is not None:
        return skipped(reason or "no KmsResponse")
    pics = ctx.target.pics
    claimed = _claimed(pics.signing, pics.encryption)
    if pics.signing and facts.signature is None:
        return violation(
            "the response is not signed although the KMS claims signing (PICS signing)",
            claimed,
            "no ds:Signature",
        )
    encryption = facts.encryption
    if pics.encryption == "message" and (encryption is None or encryption.location != "KmsMessage"):
        return violation(
            "KmsMessage content is not an xenc:EncryptedData although the KMS claims "
            "message encryption (PICS encryption = message)",
            claimed,
            "KmsMessage in clear" if encryption is None else f"EncryptedData {encryption.location}",
        )
    if pics.encryption == "keys":
        clear = _keys_in_clear(ctx)
        if clear:
            return violation(
                f"{clear[0]} is not an EncKeyContentType xenc:EncryptedKey although the KMS "
                "claims per-key encryption (PICS encryption = keys)",
                claimed,
                f"{len(clear)} key(s) in clear",
            )
    return ok(f"protected as claimed: {claimed}")


@check("security.sig-algorithm", reqs=("REQ-120",), clause="D.1")
@verifies(_signature)
def sig_algorithm(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """The signature is HMAC-SHA256 with the full 256-bit output (32-octet SignatureValue)."""
    method = signature.signature_method
    if method != xmldsig.HMAC_SHA256:
        return violation(
            f"SignatureMethod is {shorten(method)}, not HMAC-SHA256",
            xmldsig.HMAC_SHA256,
            shorten(method),
        )
    length = signature.hmac_output_length
    if length is not None and (not length.isdecimal() or int(length) < xmldsig.HMAC_SHA256_BITS):
        return violation(
            f"HMACOutputLength {shorten(length, 20)} truncates HMAC-SHA256 below 256 bits",
            "no HMACOutputLength, or 256",
            length,
        )
    if signature.signature_value_error is not None:
        return violation(signature.signature_value_error, "32 octets, base64", "not base64")
    octets = signature.signature_value_octets
    if octets != HMAC_SHA256_OCTETS:
        return violation(
            f"SignatureValue is {octets} octets, HMAC-SHA256 gives 32",
            "32 octets",
            f"{octets} octets",
        )
    return ok("HMAC-SHA256, 256-bit SignatureValue")


@check("security.sig-verifies", reqs=("REQ-121",), clause="D.3.1, seed CR")
@verifies(_signature)
def sig_verifies(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """The signature verifies with the key Signature-ID names (the user's InK or TrK)."""
    facts = _facts(ctx)
    assert facts is not None
    keys = _user_keys(ctx)
    if not keys:
        return skipped("the target file holds no InK or TrK for this user")
    named, source = _named_key(facts, signature)
    if named is None:
        name = "ink" if "ink" in keys else "trk"
        source = f"the {KEY_LABELS[name]} (neither Signature-ID nor KeyName names a key)"
    else:
        found = _key_called(keys, named)
        if found is None:
            return skipped(
                f"{source} names key ID {_b64(named)}, which the target file does not hold "
                f"({_held(keys)})"
            )
        name, source = found, f"the {KEY_LABELS[found]} named by {source}"
    result = signature.verifications[name]
    if result.ok:
        return ok(f"the signature verifies with {source}")
    return violation(
        f"the signature does not verify with {source}: {result.message}",
        f"valid HMAC-SHA256 under the {KEY_LABELS[name]}",
        result.reason,
    )


@check(
    "security.sig-covers-message",
    reqs=("REQ-122",),
    clause="Table D.3.1-1",
    inferred=True,
)
@verifies(_signature)
def sig_covers_message(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """The signature's Reference covers KmsMessage (KmsResponse or an ancestor is signed)."""
    if ctx.raw is None or ctx.raw.kms_message is None:
        return skipped("no KmsMessage to cover")
    uri = signature.reference_uri
    target = signature.reference_target or "no single element"
    reference = f'Reference URI="{shorten(uri)}" (names {target})'
    verified = [v for v in signature.verifications.values() if v.ok]
    covers = (
        any(v.covers_message for v in verified)
        if verified
        else bool(signature.reference_covers_message)
    )
    if not covers:
        return violation(
            f"the signature does not cover KmsMessage: {reference}",
            "a Reference to KmsResponse or another ancestor of KmsMessage",
            f'URI="{shorten(uri)}" -> {target}',
        )
    if verified:
        return ok(f"the verified signature covers KmsMessage: {reference}")
    return ok(f"{reference} covers KmsMessage (the signature does not verify: see sig-verifies)")


@check(
    "security.sig-digest-c14n",
    reqs=("REQ-123",),
    clause="D.1 (observed practice)",
    strength=Strength.SHOULD,
    inferred=True,
)
@verifies(_signature)
def sig_digest_c14n(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """DigestMethod is SHA-256 and CanonicalizationMethod is Canonical XML 1.0."""
    if signature.digest_method != xmldsig.SHA256:
        return violation(
            f"DigestMethod is {shorten(signature.digest_method)}, not SHA-256",
            xmldsig.SHA256,
            shorten(signature.digest_method),
        )
    accepted = ctx.profile.c14n_methods
    if signature.c14n_method not in accepted:
        return violation(
            f"CanonicalizationMethod is {shorten(signature.c14n_method)}, "
            "not Canonical XML 1.0 (with or without comments)",
            " or ".join(accepted),
            shorten(signature.c14n_method),
        )
    return ok(f"SHA-256 digest, canonicalization {signature.c14n_method}")


@check("security.sig-id", reqs=("REQ-062",), clause="D.3.1, seed CR")
@verifies(_signature)
def sig_id(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """A signed response carries Signature-ID = the InK-ID if the user has an InK, else TrK-ID."""
    if not ctx.profile.has_trk_id_elements:
        return skipped(f"profile {ctx.profile.name} has no Signature-ID element")
    facts = _facts(ctx)
    assert facts is not None
    keys = _user_keys(ctx)
    wanted = "ink" if "ink" in keys else "trk"
    expected = f"base64 of the {KEY_LABELS[wanted]}-ID" + (
        f" ({keys[wanted].key_id_b64})" if keys else ""
    )
    if facts.signature_id_text is None:
        return violation("signed response without a Signature-ID element", expected, "(absent)")
    if facts.signature_id is None:
        return violation(
            f"Signature-ID is not a base64 key ID: {facts.signature_id_error}",
            expected,
            shorten(facts.signature_id_text),
        )
    if not keys:
        return ok("Signature-ID present; the target file holds no key ID to compare with")
    if facts.signature_id == keys[wanted].key_id:
        return ok(f"Signature-ID names the {KEY_LABELS[wanted]} ({keys[wanted].key_id_b64})")
    other = _key_called(keys, facts.signature_id)
    names = f"the {KEY_LABELS[other]}" if other else "a key the user does not hold"
    return violation(
        f"Signature-ID names {names}, expected the {KEY_LABELS[wanted]}-ID"
        + (" (the user has an InK)" if wanted == "ink" else ""),
        expected,
        shorten(facts.signature_id_text),
    )


@check("security.sig-ink-over-trk", reqs=("REQ-063",), clause="D.3.1, seed CR")
@verifies(_signature)
def sig_ink_over_trk(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """With an InK provisioned the KMS signs with the InK; with a TrK only, with the TrK."""
    keys = _user_keys(ctx)
    if not keys:
        return skipped("the target file holds no InK or TrK for this user")
    verified = signature.verified_with()
    if not verified:
        return skipped("the signature verifies with neither key, so the key used is unknown")
    if "ink" in keys:
        if "ink" in verified:
            return ok("signed with the InK")
        return violation(
            "signed with the TrK although an InK is provisioned (REQ-063)", "InK", "TrK"
        )
    if "trk" in verified:
        return ok("signed with the TrK (no InK provisioned for this user)")
    return violation("the signature does not verify with the TrK", "TrK", "unknown key")


@check(
    "security.ids-absent-when-unprotected",
    reqs=("REQ-064",),
    clause="seed CR",
    strength=Strength.SHOULD,
    inferred=True,
)
@verifies(_known_facts)
def ids_absent_when_unprotected(ctx: CheckContext, facts: ProtectionFacts) -> Finding:
    """TrK-ID and Signature-ID appear only when encryption or a signature is applied."""
    problem = _unbacked_claim(ctx, facts)
    if problem is not None:
        return violation(problem, "no key ID element without its protection", problem)
    return ok("no TrK-ID or Signature-ID without the protection it names")


@check("security.claims-verify", reqs=("REQ-130",), clause="D.3.1", inferred=True)
@verifies(_known_facts)
def claims_verify(ctx: CheckContext, facts: ProtectionFacts) -> Finding:
    """A TrK-ID or Signature-ID comes with protection that verifies or decrypts."""
    if facts.trk_id_text is None and facts.signature_id_text is None:
        return skipped("no TrK-ID or Signature-ID in the response")
    problem = _unbacked_claim(ctx, facts) or _claim_failure(ctx, facts)
    if problem is not None:
        return violation(problem, "every key ID claim backed by protection that opens", problem)
    return ok("every TrK-ID/Signature-ID claim is backed by protection that opens")


@check("security.enc-structure", reqs=("REQ-124",), clause="D.3.1, seed CR")
@verifies(_encryption)
def enc_structure(ctx: CheckContext, encryption: EncryptionFacts) -> Finding:
    """The encrypted KmsMessage holds one xenc:EncryptedData, Type #Content, with CipherValue."""
    expected = f"one xenc:EncryptedData child of KmsMessage, Type {xmlenc.TYPE_CONTENT}"
    if encryption.location != "KmsMessage":
        return violation(
            f"the EncryptedData is {encryption.location}, not a child of KmsMessage",
            expected,
            encryption.location,
        )
    if encryption.count > 1:
        return violation(
            f"KmsMessage holds {encryption.count} EncryptedData elements", expected, "several"
        )
    if encryption.other_children:
        names = ", ".join(encryption.other_children)
        return violation(f"KmsMessage holds {names} beside the EncryptedData", expected, names)
    if encryption.type != xmlenc.TYPE_CONTENT:
        return violation(
            f"EncryptedData Type is {shorten(encryption.type)}, not {xmlenc.TYPE_CONTENT}",
            xmlenc.TYPE_CONTENT,
            shorten(encryption.type),
        )
    if not encryption.has_cipher_value:
        return violation(
            "EncryptedData has no CipherData/CipherValue", "CipherData/CipherValue", "(absent)"
        )
    return ok("KmsMessage holds one xenc:EncryptedData (Type #Content) with a CipherValue")


@check("security.enc-algorithm", reqs=("REQ-125",), clause="D.3.1, seed CR")
@verifies(_encryption)
def enc_algorithm(ctx: CheckContext, encryption: EncryptionFacts) -> Finding:
    """KmsMessage is AES-128-GCM encrypted (IV 12 || C || tag 16) and decrypts with the TrK."""
    accepted = ctx.profile.message_encryption_algorithms
    if not accepted:
        return violation(
            f"KmsMessage is encrypted, but profile {ctx.profile.name} has no message encryption",
            "KmsMessage in clear",
            shorten(encryption.algorithm),
        )
    if encryption.algorithm not in accepted:
        return violation(
            f"EncryptionMethod is {shorten(encryption.algorithm)}, not "
            + " or ".join(a.rpartition("#")[2] for a in accepted),
            " or ".join(accepted),
            shorten(encryption.algorithm),
        )
    if encryption.cipher_octets is not None and encryption.cipher_octets < GCM_OVERHEAD_OCTETS:
        return violation(
            f"CipherValue is {encryption.cipher_octets} octets, shorter than IV (12) + tag (16)",
            "IV (12) || ciphertext || tag (16)",
            f"{encryption.cipher_octets} octets",
        )
    if not encryption.key_available:
        return skipped("algorithm accepted; not decrypted: no TrK for this user in the target")
    if not encryption.decrypted:
        return violation(
            f"KmsMessage does not decrypt with the TrK: {encryption.error}",
            "AES-GCM decryption with the TrK",
            encryption.error or "failed",
        )
    return ok(f"{encryption.algorithm.rpartition('#')[2]}; decrypts with the TrK")


@check("security.enc-trk-id", reqs=("REQ-061",), clause="D.3.1 (Rel-17), seed CR")
def enc_trk_id(ctx: CheckContext) -> Finding:
    """An encrypted response carries TrK-ID, equal to the user's TrK-ID."""
    facts = _facts(ctx)
    if facts is None or not facts.encrypted:
        return skipped("nothing in the response is encrypted")
    if not ctx.profile.has_trk_id_elements:
        return skipped(f"profile {ctx.profile.name} has no TrK-ID element")
    trk = _user_keys(ctx).get("trk")
    expected = f"TrK-ID = {trk.key_id_b64}" if trk else "TrK-ID present"
    if facts.trk_id_text is None:
        return violation(
            "the response is encrypted but has no TrK-ID element", expected, "(absent)"
        )
    if facts.trk_id is None:
        return violation(
            f"TrK-ID is not a base64 key ID: {facts.trk_id_error}",
            expected,
            shorten(facts.trk_id_text),
        )
    if trk is None:
        return ok("TrK-ID present; the target file holds no TrK-ID to compare with")
    if facts.trk_id != trk.key_id:
        return violation(
            f"TrK-ID {shorten(facts.trk_id_text)} is not the user's TrK-ID {trk.key_id_b64}",
            expected,
            shorten(facts.trk_id_text),
        )
    return ok(f"TrK-ID names the user's TrK ({trk.key_id_b64})")


@check("security.enc-keyinfo", reqs=("REQ-126",), clause="D.3.1, seed CR")
@verifies(_encryption)
def enc_keyinfo(ctx: CheckContext, encryption: EncryptionFacts) -> Finding:
    """EncryptedData KeyInfo/KeyName is the base64 TrK-ID, the same as the TrK-ID element."""
    facts = _facts(ctx)
    assert facts is not None
    trk = _user_keys(ctx).get("trk")
    if encryption.key_name is None:
        return violation(
            "EncryptedData has no ds:KeyInfo/ds:KeyName naming the TrK",
            "KeyName = base64 TrK-ID",
            "(absent)",
        )
    if encryption.key_name_id is None:
        return violation(
            f"EncryptedData KeyName is not a base64 key ID: {encryption.key_name_error}",
            "KeyName = base64 TrK-ID",
            shorten(encryption.key_name),
        )
    if facts.trk_id is not None and encryption.key_name_id != facts.trk_id:
        return violation(
            f"EncryptedData KeyName {shorten(encryption.key_name)} differs from the TrK-ID "
            f"element {shorten(facts.trk_id_text)}",
            shorten(facts.trk_id_text),
            shorten(encryption.key_name),
        )
    if trk is not None and encryption.key_name_id != trk.key_id:
        return violation(
            f"EncryptedData KeyName {shorten(encryption.key_name)} is not the user's TrK-ID "
            f"{trk.key_id_b64}",
            trk.key_id_b64,
            shorten(encryption.key_name),
        )
    return ok(f"EncryptedData KeyName is the TrK-ID ({shorten(encryption.key_name)})")


@check("security.enc-plaintext", reqs=("REQ-127",), clause="D.3.1")
@verifies(_encryption)
def enc_plaintext(ctx: CheckContext, encryption: EncryptionFacts) -> Finding:
    """The decrypted content is exactly one schema-valid message element for the request."""
    wanted = EXPECTED_CONTENT.get(ctx.request_type or "")
    name = wanted.__name__ if wanted else "KmsInit/KmsKeyProv/KmsCertCache/KmsLookup"
    if not encryption.key_available:
        return skipped("not decrypted: no TrK for this user in the target file")
    if not encryption.decrypted:
        return violation(
            f"KmsMessage does not decrypt, so no {name} can be read: {encryption.error}",
            name,
            "no plaintext",
        )
    if encryption.plaintext_error is not None:
        return violation(
            f"the decrypted content is not well-formed XML: {encryption.plaintext_error}",
            name,
            "not XML",
        )
    found = [n.rpartition("}")[2] for n in encryption.plaintext_elements]
    namespace = ctx.raw.namespace if ctx.raw else ctx.profile.namespace
    names_ok = len(found) == 1 and encryption.plaintext_elements[0] == (
        f"{{{namespace}}}{found[0]}"
    )
    allowed = (wanted.__name__,) if wanted else tuple(EXPECTED_CONTENT_NAMES)
    if not names_ok or found[0] not in allowed or encryption.plaintext_text:
        observed = ", ".join(found) or "no element"
        if encryption.plaintext_text:
            observed += " and character data"
        return violation(
            f"the decrypted content is {observed}, expected exactly one {name}", name, observed
        )
    problem = _plaintext_schema_problem(ctx)
    if problem is not None:
        return violation(f"the decrypted {found[0]} is not schema-valid: {problem}", name, problem)
    return ok(f"the plaintext is one schema-valid {found[0]}")


@check("security.key-wrap", reqs=("REQ-128",), clause="D.3.3, schema", inferred=True)
def key_wrap(ctx: CheckContext) -> Finding:
    """Each EncKeyContentType key is AES-key-wrapped and unwraps with the TrK to its length."""
    facts = _facts(ctx)
    keys = [k for k in facts.wrapped_keys if k.element not in NEW_KEY_ELEMENTS] if facts else []
    if not keys:
        return skipped(_no_keys_reason(ctx, "no EncKeyContentType key set key in the response"))
    return _wrapped_keys_finding(ctx, keys, "EncKeyContentType key", lambda _: None)


@check(
    "security.new-keys",
    reqs=("REQ-081", "REQ-108"),
    clause="D.3.1, schema (KmsInitTkIkType, KmsKeyProvTkIkType)",
)
def new_keys(ctx: CheckContext) -> Finding:
    """A delivered NewTransportKey/NewIntegrityKey sits under the TkIk type and unwraps."""
    facts = _facts(ctx)
    keys = [k for k in facts.wrapped_keys if k.element in NEW_KEY_ELEMENTS] if facts else []
    if not keys:
        return skipped(_no_keys_reason(ctx, "no NewTransportKey or NewIntegrityKey (optional)"))

    def message_type(key: WrappedKeyFacts) -> str | None:
        owner = key.location.split("/", 1)[0]
        wanted = NEW_KEY_MESSAGE_TYPES.get(owner)
        if wanted is not None and key.message_xsi_type != wanted:
            return (
                f"{owner} carries it with xsi:type {shorten(key.message_xsi_type)}, "
                f"expected {wanted}"
            )
        return None

    return _wrapped_keys_finding(ctx, keys, "new key", message_type)


# -- helpers ----------------------------------------------------------------------------

EXPECTED_CONTENT_NAMES = sorted({kind.__name__ for kind in EXPECTED_CONTENT.values()})
_UNPROTECTED_MEMO = "security.unprotect"


def _facts(ctx: CheckContext) -> ProtectionFacts | None:
    if isinstance(ctx.protection, ProtectionFacts):
        return ctx.protection
    return _computed(ctx)[1]


def _view(ctx: CheckContext) -> KmsResponse | None:
    if isinstance(ctx.protection, ProtectionFacts):
        return ctx.response
    return _computed(ctx)[0]


def _computed(ctx: CheckContext) -> tuple[KmsResponse | None, ProtectionFacts | None]:
    if ctx.raw is None:
        return ctx.response, None
    if _UNPROTECTED_MEMO not in ctx.memo:
        ctx.memo[_UNPROTECTED_MEMO] = unprotect(ctx.raw, ctx.user, ctx.profile)
    view, facts = ctx.memo[_UNPROTECTED_MEMO]
    return view, facts


def _user_keys(ctx: CheckContext) -> dict[str, SymmetricKey]:
    user = ctx.user
    if user is None:
        return {}
    return {name: key for name, key in (("ink", user.ink), ("trk", user.trk)) if key is not None}


def _key_called(keys: dict[str, SymmetricKey], key_id: bytes) -> str | None:
    return next((name for name, key in keys.items() if key.key_id == key_id), None)


def _named_key(facts: ProtectionFacts, signature: SignatureFacts) -> tuple[bytes | None, str]:
    if facts.signature_id is not None:
        return facts.signature_id, "Signature-ID"
    return signature.key_name_id, "ds:KeyName"


def _held(keys: dict[str, SymmetricKey]) -> str:
    return ", ".join(f"{KEY_LABELS[name]}-ID {key.key_id_b64}" for name, key in keys.items())


def _b64(data: bytes) -> str:
    return shorten(base64.b64encode(data).decode("ascii"))


def _not_a_message(ctx: CheckContext) -> str | None:
    status = ctx.http.status if ctx.http else ctx.exchange.status if ctx.exchange else None
    if status is not None and not 200 <= status < 300:
        return f"HTTP {status}: not a successful response"
    if ctx.raw is None or ctx.raw.kms_message is None:
        return "no KmsMessage (error or empty response): nothing the KMS protects"
    if ctx.raw.kms_error is not None:
        return "KmsError response"
    return None


def _claimed(signing: bool, encryption: str) -> str:
    parts = ["signed" if signing else "not necessarily signed"]
    parts.append({"message": "message encrypted", "keys": "keys wrapped"}.get(encryption, ""))
    return ", ".join(p for p in parts if p)


def _keys_in_clear(ctx: CheckContext) -> list[str]:
    view = _view(ctx)
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


def _trk_id_without_encryption_accepted(ctx: CheckContext) -> bool:
    # A KMS that wraps keys one by one may name its TrK in every response, also in those
    # that carry no key (KmsInit, KmsCertCache): accepted when that is what it claims.
    return ctx.target is not None and ctx.target.pics.encryption == "keys"


def _unbacked_claim(ctx: CheckContext, facts: ProtectionFacts) -> str | None:
    if facts.signature_id_text is not None and facts.signature is None:
        return "Signature-ID present although the response is not signed"
    if (
        facts.trk_id_text is not None
        and not facts.encrypted
        and not _trk_id_without_encryption_accepted(ctx)
    ):
        return "TrK-ID present although nothing in the response is encrypted"
    return None


def _claim_failure(ctx: CheckContext, facts: ProtectionFacts) -> str | None:
    keys = _user_keys(ctx)
    if facts.signature_id_text is not None:
        if facts.signature_id is None:
            return f"Signature-ID is not a base64 key ID: {facts.signature_id_error}"
        name = _key_called(keys, facts.signature_id)
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


def _plaintext_schema_problem(ctx: CheckContext) -> str | None:
    view = _view(ctx)
    if view is None:
        return None
    document = view.root if view.root is not None else view.element
    namespace = view.namespace if ctx.profile.namespace_configurable else None
    for path, reason in profile_schema_errors(ctx.profile, namespace, document):
        if "/KmsMessage/" in path + "/":
            return f"{path}: {reason}"
    return None


def _no_keys_reason(ctx: CheckContext, default: str) -> str:
    facts = _facts(ctx)
    encryption = facts.encryption if facts else None
    if encryption is not None and not encryption.decrypted:
        return "KmsMessage is encrypted and was not decrypted: its keys cannot be read"
    return default


def _wrapped_keys_finding(
    ctx: CheckContext,
    keys: list[WrappedKeyFacts],
    noun: str,
    extra_rule: Callable[[WrappedKeyFacts], str | None],
) -> Finding:
    accepted = ctx.profile.key_wrap_algorithms

    def rule(key: WrappedKeyFacts) -> str | None:
        problem = extra_rule(key) or _wrap_problem(key, accepted)
        if problem is None and key.key_available:
            return _unwrap_problem(key)
        return problem

    finding = first_violation(
        keys, rule, lambda _, key: key.location, noun, "wrapped under the TrK"
    )
    if finding.outcome is Outcome.OK and not all(k.key_available for k in keys):
        return skipped("wrap algorithms accepted; not unwrapped: no TrK for this user")
    return finding


def _wrap_problem(key: WrappedKeyFacts, accepted: tuple[str, ...]) -> str | None:
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


def _unwrap_problem(key: WrappedKeyFacts) -> str | None:
    if not key.unwrapped:
        return key.error or "does not unwrap with the TrK"
    if key.expected_octets is not None and key.unwrapped_octets != key.expected_octets:
        return f"unwraps to {key.unwrapped_octets} octets, expected {key.expected_octets}"
    return None
