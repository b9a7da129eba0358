"""Security checks: the InK/TrK signature and TrK encryption of responses (D.1, D.3.1).

The security step (``conformance.protection.response.unprotect``) has already verified, decrypted
and unwrapped what it could and recorded it in ``ProtectionFacts``; each check here judges
one rule on those facts. When a context carries no facts (a check run on its own), they
are computed from ``ctx.raw`` once and kept in ``ctx.memo`` (security_support.py, with the
guards and helpers the checks share).
"""

from __future__ import annotations

from conformance.checks.base import (
    CheckContext,
    Finding,
    check,
    judge,
    ok,
    shorten,
    skipped,
    violation,
)
from conformance.checks.envelope import EXPECTED_CONTENT
from conformance.checks.security_support import (
    EXPECTED_CONTENT_NAMES,
    GCM_OVERHEAD_OCTETS,
    HMAC_SHA256_OCTETS,
    KEY_LABELS,
    NEW_KEY_MESSAGE_TYPES,
    b64,
    claim_failure,
    claimed_protection,
    encrypted_facts,
    encryption_facts,
    held,
    key_called,
    keys_in_clear,
    known_facts,
    named_key,
    no_keys_reason,
    not_a_message,
    plaintext_schema_problem,
    protection_facts,
    signature_facts,
    trk_id_names_another_key,
    unbacked_claim,
    user_keys,
    with_key_id_element,
    wrapped_keys_finding,
)
from conformance.checks.verify import verifies
from conformance.protection.response import (
    NEW_KEY_ELEMENTS,
    EncryptionFacts,
    ProtectionFacts,
    SignatureFacts,
    WrappedKeyFacts,
)
from conformance.xmlsec import xmldsig, xmlenc


@check("security.expected-protection")
def expected_protection(ctx: CheckContext) -> Finding:
    """The response is protected the way the KMS claims (PICS signing and encryption)."""
    if ctx.target is None:
        return skipped("no target file: the protection the KMS claims (PICS) is unknown")
    facts = protection_facts(ctx)
    reason = not_a_message(ctx)
    if facts is None or reason is not None:
        return skipped(reason or "no KmsResponse")
    pics = ctx.target.pics
    claimed = claimed_protection(pics.signing, pics.encryption)
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
        clear = keys_in_clear(ctx)
        if clear:
            return violation(
                f"{clear[0]} is not an EncKeyContentType xenc:EncryptedKey although the KMS "
                "claims per-key encryption (PICS encryption = keys)",
                claimed,
                f"{len(clear)} key(s) in clear",
            )
    return ok(f"protected as claimed: {claimed}")


@check("security.sig-algorithm")
@verifies(signature_facts)
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


@check("security.sig-verifies")
@verifies(signature_facts)
def sig_verifies(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """The signature verifies with the key Signature-ID names (the user's InK or TrK)."""
    facts = protection_facts(ctx)
    assert facts is not None
    keys = user_keys(ctx)
    if not keys:
        return skipped("the target file holds no InK or TrK for this user")
    named, source = named_key(facts, signature)
    if named is None:
        name = "ink" if "ink" in keys else "trk"
        source = f"the {KEY_LABELS[name]} (neither Signature-ID nor KeyName names a key)"
    else:
        found = key_called(keys, named)
        if found is None:
            return skipped(
                f"{source} names key ID {b64(named)}, which the target file does not hold "
                f"({held(keys)})"
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


@check("security.sig-covers-message")
@verifies(signature_facts)
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


@check("security.sig-digest-c14n")
@verifies(signature_facts)
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


@check("security.sig-id")
@verifies(signature_facts)
@with_key_id_element("Signature-ID")
def sig_id(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """A signed response carries Signature-ID = the InK-ID if the user has an InK, else TrK-ID."""
    facts = protection_facts(ctx)
    assert facts is not None
    keys = user_keys(ctx)
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
    other = key_called(keys, facts.signature_id)
    names = f"the {KEY_LABELS[other]}" if other else "a key the user does not hold"
    return violation(
        f"Signature-ID names {names}, expected the {KEY_LABELS[wanted]}-ID"
        + (" (the user has an InK)" if wanted == "ink" else ""),
        expected,
        shorten(facts.signature_id_text),
    )


@check("security.sig-ink-over-trk")
@verifies(signature_facts)
def sig_ink_over_trk(ctx: CheckContext, signature: SignatureFacts) -> Finding:
    """With an InK provisioned the KMS signs with the InK; with a TrK only, with the TrK."""
    keys = user_keys(ctx)
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


@check("security.ids-absent-when-unprotected")
@verifies(known_facts)
def ids_absent_when_unprotected(ctx: CheckContext, facts: ProtectionFacts) -> Finding:
    """TrK-ID and Signature-ID appear only when encryption or a signature is applied."""
    return judge(
        unbacked_claim(ctx, facts),
        "no key ID element without its protection",
        "no TrK-ID or Signature-ID without the protection it names",
    )


@check("security.claims-verify")
@verifies(known_facts)
def claims_verify(ctx: CheckContext, facts: ProtectionFacts) -> Finding:
    """A TrK-ID or Signature-ID comes with protection that verifies or decrypts."""
    if facts.trk_id_text is None and facts.signature_id_text is None:
        return skipped("no TrK-ID or Signature-ID in the response")
    return judge(
        unbacked_claim(ctx, facts) or claim_failure(ctx, facts),
        "every key ID claim backed by protection that opens",
        "every TrK-ID/Signature-ID claim is backed by protection that opens",
    )


@check("security.enc-structure")
@verifies(encryption_facts)
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


@check("security.enc-algorithm")
@verifies(encryption_facts)
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


@check("security.enc-trk-id")
@verifies(encrypted_facts)
@with_key_id_element("TrK-ID")
def enc_trk_id(ctx: CheckContext, facts: ProtectionFacts) -> Finding:
    """An encrypted response carries TrK-ID, equal to the user's TrK-ID."""
    trk = user_keys(ctx).get("trk")
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
        return trk_id_names_another_key(
            facts, f"is not the user's TrK-ID {trk.key_id_b64}", expected
        )
    return ok(f"TrK-ID names the user's TrK ({trk.key_id_b64})")


@check("security.enc-keyinfo")
@verifies(encryption_facts)
def enc_keyinfo(ctx: CheckContext, encryption: EncryptionFacts) -> Finding:
    """EncryptedData KeyInfo/KeyName is the base64 TrK-ID, the same as the TrK-ID element."""
    facts = protection_facts(ctx)
    assert facts is not None
    trk = user_keys(ctx).get("trk")
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


@check("security.enc-plaintext")
@verifies(encryption_facts)
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
    problem = plaintext_schema_problem(ctx)
    if problem is not None:
        return violation(f"the decrypted {found[0]} is not schema-valid: {problem}", name, problem)
    return ok(f"the plaintext is one schema-valid {found[0]}")


@check("security.key-wrap")
def key_wrap(ctx: CheckContext) -> Finding:
    """Each EncKeyContentType key is AES-key-wrapped and unwraps with the TrK to its length."""
    facts = protection_facts(ctx)
    keys = [k for k in facts.wrapped_keys if k.element not in NEW_KEY_ELEMENTS] if facts else []
    if not keys:
        return skipped(no_keys_reason(ctx, "no EncKeyContentType key set key in the response"))
    return wrapped_keys_finding(ctx, keys, "EncKeyContentType key", lambda _: None)


@check("security.new-keys")
def new_keys(ctx: CheckContext) -> Finding:
    """A delivered NewTransportKey/NewIntegrityKey sits under the TkIk type and unwraps."""
    facts = protection_facts(ctx)
    keys = [k for k in facts.wrapped_keys if k.element in NEW_KEY_ELEMENTS] if facts else []
    if not keys:
        return skipped(no_keys_reason(ctx, "no NewTransportKey or NewIntegrityKey (optional)"))

    def message_type(key: WrappedKeyFacts) -> str | None:
        owner = key.location.split("/", 1)[0]
        wanted = NEW_KEY_MESSAGE_TYPES.get(owner)
        if wanted is not None and key.message_xsi_type != wanted:
            return (
                f"{owner} carries it with xsi:type {shorten(key.message_xsi_type)}, "
                f"expected {wanted}"
            )
        return None

    return wrapped_keys_finding(ctx, keys, "new key", message_type)
