"""The faults of the stateful UE scenarios (issue 12): TrK/InK rotation and key periods.

Kept apart from ``refkms.faults`` (which adds them to ``FAULTS``) so the catalogue module
stays small. Each entry is (name, description, REQ ids, case ids, hook); ``EMBEDDED_CONFIG``
gives the refkms configuration (``refkms.config`` mapping) a fault needs to be observable
at all: ``serve --fault NAME`` without ``--config``, ``run --embedded-fault NAME`` and the
fault matrix serve it in that mode.
"""

from __future__ import annotations

from typing import Any

HOOK_ROTATION = "refkms.rotation:KeyChain.faulted, refkms.protection (delivery)"

ROTATION_FAULTS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...], str], ...] = (
    (
        "rotation-old-trk-used",
        "after a TrK rotation the KMS keeps encrypting with the old TrK (under the new TrK-ID)",
        ("REQ-125", "REQ-061"),
        ("ROT-TRK-001",),
        HOOK_ROTATION,
    ),
    (
        "rotation-new-trk-protects-delivery",
        "the response delivering a new TrK is already encrypted with that new TrK",
        ("REQ-125", "REQ-081"),
        ("ROT-TRK-001", "ROT-TRK-002"),
        HOOK_ROTATION,
    ),
    (
        "rotation-trk-id-names-old",
        "after a TrK rotation, TrK-ID (and KeyName) still name the old TrK",
        ("REQ-061", "REQ-126"),
        ("ROT-TRK-001", "ROT-BOTH-001"),
        HOOK_ROTATION,
    ),
    (
        "rotation-trk-signature-after-ink",
        "after an InK was delivered (and is used by the UE) the KMS signs with the TrK",
        ("REQ-063", "REQ-062"),
        ("ROT-INK-001", "ROT-INK-002", "ROT-BOTH-001"),
        HOOK_ROTATION,
    ),
    (
        "rotation-delivered-key-wrong-kek",
        "NewTransportKey/NewIntegrityKey are wrapped under the next TrK, not the UE's current one",
        ("REQ-081", "REQ-108"),
        ("ROT-TRK-001", "ROT-INK-001", "ROT-BOTH-001"),
        HOOK_ROTATION,
    ),
    (
        "rotation-old-trk-id-answered-with-new",
        "a request naming the TrK held before a rotation is answered under the newest TrK",
        ("REQ-129",),
        ("ROT-TRK-002",),
        HOOK_ROTATION,
    ),
    (
        "rsk-same-across-periods",
        "the RSK of the first key period requested is served for every period",
        ("REQ-104", "REQ-102"),
        ("ROT-PERIOD-001",),
        "refkms.keys:KeyIssuer",
    ),
    (
        "period-other-numbered-current",
        "the key set of another period than the current carries the current KeyPeriodNo",
        ("REQ-096", "REQ-097"),
        ("ROT-PERIOD-001",),
        "refkms.app:ReferenceKms.keyprov / certcache / cert / lookup / redirect",
    ),
    # The KMS's own certificate replaced during the run (refkms/certchange.py).
    (
        "kms-cert-keys-old-master",
        "after its certificate was replaced the KMS keeps issuing key sets under the old "
        "master keys",
        ("REQ-100", "REQ-102"),
        ("ROT-CERT-001",),
        "refkms.domain:Domain.issuer",
    ),
    (
        "kms-cert-init-old",
        "after its certificate was replaced KMS Initialize keeps answering with the old "
        "certificate (while key sets use the new master keys)",
        ("REQ-070",),
        ("ROT-CERT-001", "ROT-CERT-002"),
        "refkms.domain:Domain.own_certificate",
    ),
    (
        "kms-cert-cert-old",
        "after its certificate was replaced KMS Cert for its own KmsUri returns the old one",
        ("REQ-116",),
        ("ROT-CERT-002",),
        "refkms.app:ReferenceKms.cert",
    ),
    (
        "kms-cert-certcache-old",
        "after its certificate was replaced KMS CertCache lists the old one as the KMS's own",
        ("REQ-110",),
        ("ROT-CERT-002",),
        "refkms.app:ReferenceKms.certcache",
    ),
)

_ROTATE_TRK = {"encryption": "message", "rotate_trk": True}
EMBEDDED_CONFIG: dict[str, dict[str, Any]] = {
    "rotation-old-trk-used": {"protection": _ROTATE_TRK},
    "rotation-new-trk-protects-delivery": {"protection": _ROTATE_TRK},
    "rotation-trk-id-names-old": {"protection": {**_ROTATE_TRK, "rotate_ink": True}},
    "rotation-trk-signature-after-ink": {
        "protection": {**_ROTATE_TRK, "rotate_ink": True, "signing": True}
    },
    "rotation-delivered-key-wrong-kek": {"protection": {**_ROTATE_TRK, "rotate_ink": True}},
    "rotation-old-trk-id-answered-with-new": {"protection": _ROTATE_TRK},
    "kms-cert-keys-old-master": {"kms_cert_rotation": True},
    "kms-cert-init-old": {"kms_cert_rotation": True},
    "kms-cert-cert-old": {"kms_cert_rotation": True},
    "kms-cert-certcache-old": {"kms_cert_rotation": True},
}
