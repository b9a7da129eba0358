"""The UE key store: the TrK and InK each user's UE holds while a case runs (DESIGN.md 9).

A case starts from the keys of the target file. A response that delivers a
``NewTransportKey`` / ``NewIntegrityKey`` (KmsInitTkIkType / KmsKeyProvTkIkType, D.3.1)
changes what the UE holds only when the UE could trust and read it: the response decrypted
(if encrypted) and its signature verified (if signed, and it must be when the KMS claims
signing) with the keys the UE held, and the new key unwrapped under the TrK the UE held
(REQ-081/108) to a usable length, with an ``xenc:CarriedKeyName`` giving its ID. Every
later step of the case is then protected, signed and judged with the keys held *then*.

Which key protects the delivering response itself is the profile's
``delivering_response_keys``: "held" (default: the keys the UE held before it, the only
keys it can have) or "delivered" (the signature is made with the delivered InK; the
message is still encrypted under the held TrK, which alone can open it).

Steps bind values of earlier steps with ``${LABEL.NAME}`` (testcases/FORMAT.md): the key
IDs held before and after a step and the IDs it delivered. Reports show key IDs and
SHA-256 fingerprints only; delivered key values are registered as run secrets, so the
redactor removes them from anything written.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lxml import etree

from conformance.crypto import CryptoError
from conformance.model.messages import XENC_NS, KmsInit, KmsKeyProv, KmsResponse
from conformance.profiles import Profile
from conformance.target.file import Secret, SymmetricKey, Target, User
from conformance.verdicts.results import SecretValue
from conformance.xmlsec import xmldsig, xmlenc

AES_KEY_OCTETS = (16, 24, 32)
BINDING = re.compile(r"\$\{([A-Za-z0-9_-]+)\.([a-z_]+)\}")
BINDING_NAMES = (
    "trk_id",  # the TrK-ID the UE holds after the step
    "ink_id",
    "previous_trk_id",  # the TrK-ID the UE held before the step
    "previous_ink_id",
    "new_trk_id",  # the TrK-ID the step delivered (unset when it delivered none)
    "new_ink_id",
)
TRK_ONLY_USER = "trk-only"


class UnboundValue(Exception):
    """A ``${step.name}`` the earlier steps did not give a value (the case is inconc)."""


def fingerprint(key: SymmetricKey | None) -> str | None:
    """What a report may show of a key: the first 8 hex digits of SHA-256 of its value."""
    if key is None:
        return None
    return "sha256:" + hashlib.sha256(key.key.reveal()).hexdigest()[:8]


def describe(key: SymmetricKey | None) -> dict[str, str] | None:
    if key is None:
        return None
    return {"id": key.key_id_b64, "fingerprint": fingerprint(key) or ""}


@dataclass(frozen=True)
class Delivery:
    """One NewTransportKey/NewIntegrityKey as the UE read it; ``key`` None: not adopted."""

    kind: str  # "trk" or "ink"
    key: SymmetricKey | None
    problem: str | None


@dataclass
class StepKeys:
    """The UE's keys around one step, for the report (IDs and fingerprints, no values)."""

    user: int
    before: dict[str, Any]
    after: dict[str, Any]
    delivered: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "before": self.before,
            "after": self.after,
            "delivered": self.delivered,
            "notes": self.notes,
        }


class UeKeyStore:
    """Per user (1-based, as the catalogue numbers them) the keys the UE holds."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._held: dict[int, User] = {i: u for i, u in enumerate(target.users, start=1)}
        self._initial = dict(self._held)
        self._previous: dict[int, User] = {}
        self._values: dict[str, dict[str, str]] = {}
        self.secrets: list[SecretValue] = []

    # -- what the steps use -------------------------------------------------------------

    def user(self, number: int) -> User | None:
        return self._held.get(number)

    def held_users(self) -> dict[int, User]:
        return dict(self._held)

    def previous(self, number: int) -> User | None:
        """The user's keys before the last change of this case (None: none changed)."""
        return self._previous.get(number)

    def rotated(self, number: int) -> bool:
        return self._held.get(number) != self._initial.get(number)

    def resolve(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The step as sent: ``user: trk-only`` picked, ``${step.name}`` bound."""
        resolved = dict(spec)
        if resolved.get("user") == TRK_ONLY_USER:
            number = next(
                (i for i, u in self._initial.items() if u.trk is not None and u.ink is None),
                None,
            )
            if number is None:
                raise LookupError("a [[users]] entry with a TrK and no InK")
            resolved["user"] = number
        fields = resolved.get("fields")
        if isinstance(fields, Mapping):
            resolved["fields"] = {k: self._bind(str(v)) for k, v in fields.items()}
        return resolved

    def _bind(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            label, name = match.group(1), match.group(2)
            found = self._values.get(label, {}).get(name)
            if found is None:
                raise UnboundValue(f"${{{label}.{name}}} has no value: step {label} set none")
            return found

        return BINDING.sub(value, text)

    # -- after a step -------------------------------------------------------------------

    def after_step(
        self,
        label: str,
        number: int,
        view: KmsResponse | None,
        facts: Any,
        profile: Profile,
    ) -> StepKeys:
        """Adopt what the response delivered (when the UE can trust it); the step's record."""
        before = self._held.get(number)
        record = StepKeys(number, _keys_of(before), _keys_of(before))
        deliveries = read_deliveries(view, facts, before, profile, self._target) if before else []
        adopted = before
        for delivery in deliveries:
            entry: dict[str, Any] = {"kind": delivery.kind, "adopted": delivery.key is not None}
            if delivery.key is not None:
                entry |= describe(delivery.key) or {}
                self.secrets.append(SecretValue(f"new-{delivery.kind}", delivery.key.key.reveal()))
                assert adopted is not None
                if delivery.kind == "trk":
                    adopted = replace(adopted, trk=delivery.key)
                else:
                    adopted = replace(adopted, ink=delivery.key)
            else:
                entry["problem"] = delivery.problem
                record.notes.append(f"new {delivery.kind.upper()} not adopted: {delivery.problem}")
            record.delivered.append(entry)
        if adopted is not None and adopted != before:
            assert before is not None
            self._previous[number] = before
            self._held[number] = adopted
        record.after = _keys_of(self._held.get(number))
        values = {
            "trk_id": _id(self._held.get(number), "trk"),
            "ink_id": _id(self._held.get(number), "ink"),
            "previous_trk_id": _id(before, "trk"),
            "previous_ink_id": _id(before, "ink"),
        }
        for delivery in deliveries:
            if delivery.key is not None:
                values[f"new_{delivery.kind}_id"] = delivery.key.key_id_b64
        self._values[label] = {k: v for k, v in values.items() if v is not None}
        return record

    def delivered(self, label: str, kind: str) -> bool:
        return f"new_{kind}_id" in self._values.get(label, {})


def read_deliveries(
    view: KmsResponse | None,
    facts: Any,
    held: User,
    profile: Profile,
    target: Target,
) -> list[Delivery]:
    """The new keys of a response as the UE holding ``held`` reads them."""
    content = view.kms_message.content if view is not None and view.kms_message else None
    if not isinstance(content, KmsInit | KmsKeyProv):
        return []
    found = [("trk", e) for e in content.new_transport_keys]
    found += [("ink", e) for e in content.new_integrity_keys]
    if not found:
        return []
    distrust = _untrusted(facts, held, profile, target)
    seen: set[str] = set()
    deliveries = []
    for kind, element in found:
        if kind in seen:
            deliveries.append(Delivery(kind, None, "a second new key of this kind (ignored)"))
            continue
        seen.add(kind)
        if distrust is not None:
            deliveries.append(Delivery(kind, None, distrust))
            continue
        deliveries.append(_open(kind, element, held))
    return deliveries


def _untrusted(facts: Any, held: User, profile: Profile, target: Target) -> str | None:
    """Why the UE may not trust the delivering response (None: it may)."""
    encryption = getattr(facts, "encryption", None)
    if encryption is not None and not encryption.decrypted:
        return "the delivering response does not decrypt with the TrK the UE holds"
    signature = getattr(facts, "signature", None)
    if signature is None:
        if target.pics.signing:
            return "the delivering response is not signed although the KMS claims signing"
        return None
    # The facts were computed with the key the profile names for the delivering response
    # (held, or the delivered InK: engine._delivering_user), the InK first when there is one.
    wanted = "ink" if "ink" in signature.verifications else "trk"
    if wanted not in signature.verified_with():
        label = wanted.replace("ink", "InK").replace("trk", "TrK")
        return f"the delivering response's signature does not verify with the {label} the UE holds"
    return None


def _open(kind: str, element: etree._Element, held: User) -> Delivery:
    encrypted = [c for c in element if c.tag == f"{{{XENC_NS}}}EncryptedKey"]
    if not encrypted:
        return Delivery(kind, None, "no xenc:EncryptedKey in the element")
    if held.trk is None:
        return Delivery(kind, None, "the UE holds no TrK to unwrap it")
    try:
        value = xmlenc.open_encrypted_key(encrypted[0], held.trk.key.reveal())
        info = xmlenc.parse_encrypted_key(encrypted[0])
    except CryptoError as exc:
        return Delivery(kind, None, f"does not unwrap with the TrK the UE holds: {exc}")
    if kind == "trk" and len(value) not in AES_KEY_OCTETS:
        return Delivery(kind, None, f"unwraps to {len(value)} octets, not an AES key")
    if kind == "ink" and len(value) < xmldsig.HMAC_SHA256_BITS // 8:
        return Delivery(kind, None, f"unwraps to {len(value)} octets, short for HMAC-SHA256")
    name = (info.carried_key_name or "").strip()
    try:
        key_id = base64.b64decode(name, validate=True) if name else b""
    except ValueError:
        key_id = b""
    if not 1 <= len(key_id) <= 64:
        return Delivery(kind, None, "no base64 xenc:CarriedKeyName: the new key has no ID")
    return Delivery(kind, SymmetricKey(key_id, Secret(value)), None)


def with_delivered_signing_key(held: User, view: KmsResponse | None, facts: Any) -> User | None:
    """For profile ``delivering_response_keys = "delivered"``: the user whose InK is the
    InK the response delivers (TrK unchanged), or None when it delivers none that opens."""
    content = view.kms_message.content if view is not None and view.kms_message else None
    if not isinstance(content, KmsInit | KmsKeyProv) or not content.new_integrity_keys:
        return None
    delivery = _open("ink", content.new_integrity_keys[0], held)
    return replace(held, ink=delivery.key) if delivery.key is not None else None


def _keys_of(user: User | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"trk": describe(user.trk), "ink": describe(user.ink)}


def _id(user: User | None, kind: str) -> str | None:
    key = getattr(user, kind, None) if user is not None else None
    return key.key_id_b64 if key is not None else None


def binding_names(text: str) -> list[tuple[str, str]]:
    """The (label, name) pairs a field value binds (the case loader checks them)."""
    return [(m.group(1), m.group(2)) for m in BINDING.finditer(text)]
