"""TrK and InK rotation of the reference KMS: key generations and the keys a UE holds.

The provisioned TrK and InK are generation 0. With rotation on (``[protection] rotate_trk``
/ ``rotate_ink``, or ``serve --rotate trk,ink``), a KMS Initialize or KeyProvision whose
request names the UE's TrK delivers the next TrK generation, and one that is also signed
the next InK, wrapped under that TrK (D.3.1, REQ-081/108); other requests get none, since
the KMS could not tell afterwards which keys reside in the UE.

The reference KMS keeps no per-UE state: it takes the keys the UE holds from the request,
which names them (D.2.2: ``TrK-ID``; ``Signature-ID`` of a signed request names the InK).
A request naming no key means the provisioned keys. So a UE that adopted a delivered TrK
and says so is answered under that TrK, the TrK "currently residing in the MC UE" (seed
CR), and a UE that names an earlier generation it still holds is answered under that one
(REQ-129). A key ID that names no generation of the user's keys is refused with 400.

Generation n >= 1 of a key is derived from a per-user seed kept in the state directory,
so a restarted server recognises the IDs it delivered. The rotation faults act here: they
build the "held" user the protection layer then uses, with the wrong key in one place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from lxml import etree

from conformance.xmlsec import xmldsig

if TYPE_CHECKING:  # refkms.domain builds its users with the helpers of this module
    from refkms.domain import User
    from refkms.faults import ActiveFaults

MAX_GENERATION = 1000
MAX_KEY_ID_OCTETS = 64
_SUFFIX = re.compile(rb"\.g([1-9][0-9]{0,3})$")


def signing_key_id(signature: etree._Element) -> bytes | None:
    """The key ID a request signature's ds:KeyName names (profiles without Signature-ID)."""
    name = xmldsig.key_name_of(signature)
    if not name:
        return None
    try:
        return base64.b64decode(name, validate=True)
    except (binascii.Error, ValueError):
        return None


class UnknownKeyId(ValueError):
    """A request names a TrK-ID or InK-ID that is no generation of the user's key."""


def generation_id(base_id: bytes, generation: int) -> bytes:
    """The ID of generation ``generation`` of the key whose provisioned ID is ``base_id``."""
    if generation == 0:
        return base_id
    suffix = b".g%d" % generation
    return base_id[: MAX_KEY_ID_OCTETS - len(suffix)] + suffix


def generation_of(base_id: bytes, key_id: bytes) -> int | None:
    """Which generation ``key_id`` names (None: none of this key's generations)."""
    if key_id == base_id:
        return 0
    match = _SUFFIX.search(key_id)
    if match is None:
        return None
    generation = int(match.group(1))
    if generation > MAX_GENERATION or generation_id(base_id, generation) != key_id:
        return None
    return generation


def generation_key(seed: bytes, kind: str, generation: int, length: int) -> bytes:
    """Generation ``generation`` >= 1 of the user's TrK (kind "trk") or InK ("ink")."""
    return hashlib.sha256(seed + kind.encode("ascii") + b"%d" % generation).digest()[:length]


class KeyChain:
    """Every generation of one user's TrK and InK."""

    def __init__(self, user: User, seed: bytes) -> None:
        self.user = user
        self._seed = seed
        # A user provisioned with a TrK only gets a first InK under an ID of its own.
        self.ink_base_id = user.ink_id or (b"ink." + user.trk_id)[:48]
        self._ink_length = len(user.ink) if user.ink is not None else 32

    def trk(self, generation: int) -> tuple[bytes, bytes]:
        if generation == 0:
            return self.user.trk_id, self.user.trk
        key = generation_key(self._seed, "trk", generation, len(self.user.trk))
        return generation_id(self.user.trk_id, generation), key

    def ink(self, generation: int) -> tuple[bytes, bytes] | None:
        """(InK-ID, InK) of a generation; None for generation 0 of a TrK-only user."""
        if generation == 0:
            if self.user.ink is None or self.user.ink_id is None:
                return None
            return self.user.ink_id, self.user.ink
        key = generation_key(self._seed, "ink", generation, self._ink_length)
        return generation_id(self.ink_base_id, generation), key

    def trk_generation(self, key_id: bytes) -> int:
        found = generation_of(self.user.trk_id, key_id)
        if found is None:
            raise UnknownKeyId("TrK-ID does not name a TrK of this user")
        return found

    def ink_generation(self, key_id: bytes) -> int | None:
        """The InK generation ``key_id`` names; None when it names no InK of the user."""
        found = generation_of(self.ink_base_id, key_id)
        if found == 0 and self.user.ink is None:
            return None
        return found

    def holding(self, trk_generation: int, ink_generation: int) -> User:
        """The user as the KMS serves it when the UE holds these generations: the
        protection layer encrypts with ``trk``, signs with ``signing_key`` and delivers
        ``next_trk``/``next_ink``."""
        trk_id, trk = self.trk(trk_generation)
        ink = self.ink(ink_generation)
        next_trk_id, next_trk = self.trk(trk_generation + 1)
        next_ink = self.ink(ink_generation + 1)
        return replace(
            self.user,
            trk_id=trk_id,
            trk=trk,
            ink_id=ink[0] if ink else None,
            ink=ink[1] if ink else None,
            next_trk_id=next_trk_id,
            next_trk=next_trk,
            next_ink_id=next_ink[0] if next_ink else None,
            next_ink=next_ink[1] if next_ink else None,
        )

    def faulted(
        self, held: User, trk_generation: int, ink_generation: int, faults: ActiveFaults
    ) -> User:
        """``held`` with the rotation faults applied (they act only after a rotation)."""
        if trk_generation >= 1 and faults.on("rotation-old-trk-used"):
            # Keeps encrypting with the TrK it replaced, under the new TrK's name.
            held = replace(held, trk=self.trk(trk_generation - 1)[1])
        if trk_generation >= 1 and faults.on("rotation-trk-id-names-old"):
            held = replace(held, trk_id=self.trk(trk_generation - 1)[0])
        if ink_generation >= 1 and faults.on("rotation-trk-signature-after-ink"):
            held = replace(held, ink=None, ink_id=None)
        return held
