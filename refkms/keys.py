"""User key sets: Annex F UID, RFC 6507 SSK/PVT and RFC 6508 RSK, with an RSK cache.

Issuing an RSK is a 1024-bit scalar multiplication, so RSKs are cached per (master
secret, identifier); SSK/PVT are cheap and drawn fresh with a new v on every request, as
RFC 6507 section 5.1.1 intends (kms-interface.md section 15.2).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from conformance.crypto import eccsi, sakke
from conformance.crypto.periods import NTP_UNIX_OFFSET, key_period_no, ntp_seconds
from conformance.crypto.uid import mikey_sakke_uid, uid_kdf_input
from refkms.faults import ActiveFaults
from refkms.state import MasterSecrets


@dataclass(frozen=True)
class KeySet:
    """One KmsKeySet before it becomes XML."""

    user_uri: str
    uid: bytes
    period_no: int
    rsk: bytes
    ssk: bytes
    pvt: bytes


class KeyIssuer:
    def __init__(
        self,
        *,
        kms_uri: str,
        period: int,
        offset: int,
        master: MasterSecrets,
        faults: ActiveFaults,
        fixed_v: int | None = None,
        other_users: tuple[str, ...] = (),
    ) -> None:
        self._kms_uri = kms_uri
        self._period = period
        self._offset = offset
        self._master = master
        self._faults = faults
        self._fixed_v = fixed_v
        self._other_users = other_users
        self._rsk_cache: dict[tuple[int, bytes], bytes] = {}
        self._lock = threading.Lock()
        self._calls = 0
        self._first_identifier: dict[str, bytes] = {}

    def period_no_at(self, ntp: int) -> int:
        """The key period containing NTP second ``ntp``."""
        if self._faults.on("period-unix-epoch"):
            ntp -= NTP_UNIX_OFFSET
        return key_period_no(ntp, self._period, self._offset)

    def current_period_no(self, now: datetime) -> int:
        current = self.period_no_at(ntp_seconds(now))
        return current + 1 if self._faults.on("period-off-by-one") else current

    def key_set(self, user_uri: str, period_no: int) -> KeySet:
        uid = self.uid(user_uri, period_no)
        identifier = uid.hex().encode("ascii") if self._faults.on("uid-ascii-hex") else uid
        signing = eccsi.issue_signing_keys(self._master.ksak, identifier, self._fixed_v)
        pvt = signing.pvt
        if self._faults.on("ssk-not-matching-pvt"):
            pvt = eccsi.issue_signing_keys(self._master.ksak, identifier).pvt
        return KeySet(
            user_uri, uid, period_no, self._rsk(user_uri, period_no, identifier), signing.ssk, pvt
        )

    def uid(self, user_uri: str, period_no: int) -> bytes:
        if self._faults.on("uid-first-octet-0x30"):
            kdf_input = uid_kdf_input(
                user_uri, self._kms_uri, self._period, self._offset, period_no
            )
            # The Rel-13 Kapsch client builds S as a Java string starting with '0'
            # (kms-interface.md section 14.3).
            return hashlib.sha256(b"0" + kdf_input[1:]).digest()
        return mikey_sakke_uid(user_uri, self._kms_uri, self._period, self._offset, period_no)

    def _rsk(self, user_uri: str, period_no: int, identifier: bytes) -> bytes:
        z_master = self._master.z_master
        if self._faults.on("rsk-random-point"):
            return sakke.public_key_from_master(2 + secrets.randbelow(sakke.Q - 2))
        if self._faults.on("rsk-other-identity"):
            other = next((uri for uri in self._other_users if uri != user_uri), user_uri + ".x")
            identifier = self.uid(other, period_no)
        if self._faults.on("rsk-same-across-periods"):
            with self._lock:
                # The first period's RSK is served for every period of the user.
                identifier = self._first_identifier.setdefault(user_uri, identifier)
        if self._faults.on("rsk-changes-between-calls"):
            with self._lock:
                self._calls += 1
                # A KMS that re-keyed its SAKKE master secret without a new certificate.
                if self._calls % 2 == 0:
                    z_master += 1
        return self._cached_rsk(z_master, identifier)

    def _cached_rsk(self, z_master: int, identifier: bytes) -> bytes:
        key = (z_master, identifier)
        with self._lock:
            cached = self._rsk_cache.get(key)
        if cached is None:
            cached = sakke.issue_rsk(z_master, identifier)
            with self._lock:
                self._rsk_cache[key] = cached
        return cached
