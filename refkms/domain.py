"""The security domain the reference KMS serves, assembled from config, state and profile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from conformance.crypto import eccsi, sakke
from refkms import certchange
from refkms.config import KmsConfig
from refkms.faults import ActiveFaults
from refkms.keys import KeyIssuer
from refkms.profiles import Profile
from refkms.rotation import generation_id, generation_key
from refkms.state import DomainSecrets, MasterSecrets, StateDir
from refkms.tokens import TokenAuthority, TokenPolicy


@dataclass(frozen=True)
class Certificate:
    """One KmsCertificate (D.3.2) before it becomes XML."""

    role: str
    cert_uri: str
    kms_uri: str
    issuer: str
    valid_from: str
    valid_to: str
    user_key_period: int
    user_key_offset: int
    pub_enc_key: bytes
    pub_auth_key: bytes
    kms_domain_list: tuple[str, ...]


@dataclass(frozen=True)
class User:
    uri: str
    trk_id: bytes
    trk: bytes
    ink_id: bytes | None
    ink: bytes | None
    next_trk_id: bytes
    next_trk: bytes
    next_ink_id: bytes | None
    next_ink: bytes | None

    @property
    def signing_key(self) -> tuple[bytes, bytes]:
        """(key, key ID) for HMAC: the InK when provisioned, else the TrK (D.2.2, D.3.1)."""
        if self.ink is not None and self.ink_id is not None:
            return self.ink, self.ink_id
        return self.trk, self.trk_id


class Domain:
    def __init__(
        self, config: KmsConfig, profile: Profile, faults: ActiveFaults, state: StateDir
    ) -> None:
        self.config = config
        self.profile = profile
        self.faults = faults
        secrets = state.domain_secrets(config)
        self.master = secrets.own
        self.state_path = state.path
        # The own certificate and key issuer of each generation: [0] the original, [1] the
        # replacement when the certificate may be replaced (refkms.certchange).
        masters = [secrets.own]
        if config.kms_cert_rotation:
            masters.append(certchange.replacement_master(state.path))
        self.certificates = [
            self.certificate_for("Root", config.cert_uri, config.kms_uri, master)
            for master in masters
        ]
        self.partner_certificates = tuple(
            self.certificate_for("External", p.cert_uri, p.kms_uri, secrets.partners[p.kms_uri])
            for p in config.partners
        )
        self.users = _users(config, secrets)
        # Seeds of the TrK/InK generations a rotation delivers (refkms.rotation).
        self.rotation_seeds = {uri: keys.next_trk for uri, keys in secrets.users.items()}
        self.lookup = dict(config.lookup)
        self.issuers = [
            KeyIssuer(
                kms_uri=config.kms_uri,
                period=config.user_key_period,
                offset=config.user_key_offset,
                master=master,
                faults=faults,
                fixed_v=config.eccsi_fixed_v,
                other_users=tuple(self.users),
            )
            for master in masters
        ]
        self.tokens = TokenAuthority(
            state.token_key(), config.token_issuer, config.kms_uri, self.clock
        )
        self.token_policy = TokenPolicy(
            accepted_scopes=profile.accepted_scopes,
            accept_expired=faults.on("auth-expired-token-accepted"),
            accept_bad_signature=faults.on("auth-bad-signature-accepted"),
            accept_wrong_scope=faults.on("auth-wrong-scope-accepted"),
        )

    @property
    def generation(self) -> int:
        """The certificate generation in force (0 unless ``kms-cert replace`` ran)."""
        if len(self.certificates) == 1:
            return 0
        return certchange.generation(self.state_path)

    @property
    def own_certificate(self) -> Certificate:
        """The KMS's own (Root) certificate now."""
        if self.faults.on("kms-cert-init-old"):
            return self.certificates[0]  # never moves to the replacement
        return self.certificates[self.generation]

    @property
    def issuer(self) -> KeyIssuer:
        """Issues key sets under the master secrets of the certificate in force."""
        if self.faults.on("kms-cert-keys-old-master"):
            return self.issuers[0]
        return self.issuers[self.generation]

    @property
    def clock(self) -> Callable[[], datetime]:
        fixed = self.config.clock
        if fixed is not None:
            aware = fixed if fixed.tzinfo is not None else fixed.replace(tzinfo=UTC)
            return lambda: aware
        return lambda: datetime.now(UTC).replace(microsecond=0)

    def certificate_for(
        self, role: str, cert_uri: str, kms_uri: str, master: MasterSecrets
    ) -> Certificate:
        return Certificate(
            role=role,
            cert_uri=cert_uri,
            kms_uri=kms_uri,
            issuer=self.config.issuer,
            valid_from=self.config.cert_valid_from,
            valid_to=self.config.cert_valid_to,
            user_key_period=self.config.user_key_period,
            user_key_offset=self.config.user_key_offset,
            pub_enc_key=sakke.public_key_from_master(master.z_master),
            pub_auth_key=eccsi.kpak_from_ksak(master.ksak),
            kms_domain_list=self.config.kms_domain_list,
        )

    def other_user(self, user_uri: str) -> str:
        """Another configured user than ``user_uri``: what the "other user" faults name."""
        return next((uri for uri in self.users if uri != user_uri), user_uri)


def _users(config: KmsConfig, secrets: DomainSecrets) -> dict[str, User]:
    users: dict[str, User] = {}
    for entry in config.users:
        keys = secrets.users[entry.uri]
        users[entry.uri] = User(
            uri=entry.uri,
            trk_id=entry.trk_id,
            trk=keys.trk,
            ink_id=entry.ink_id,
            ink=keys.ink,
            # Generation 1 of the rotation chain (refkms.rotation), seeded by next_trk.
            next_trk_id=generation_id(entry.trk_id, 1),
            next_trk=generation_key(keys.next_trk, "trk", 1, len(keys.trk)),
            next_ink_id=generation_id(entry.ink_id, 1) if entry.ink_id is not None else None,
            next_ink=(
                generation_key(keys.next_trk, "ink", 1, len(keys.ink))
                if keys.ink is not None and entry.ink_id is not None
                else None
            ),
        )
    return users
