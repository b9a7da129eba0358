"""Release profiles the reference KMS can speak (DESIGN.md section 7, issue 3 item 4)."""

from __future__ import annotations

from dataclasses import dataclass

MC_SCOPES = frozenset(
    {
        "3gpp:mc:ptt_key_management_service",
        "3gpp:mc:video_key_management_service",
        "3gpp:mc:data_key_management_service",
    }
)
# The Rel-13 style scopes (kms-interface.md section 2), still accepted by the r16 profile.
OLDER_SCOPES = frozenset(
    {
        "3gpp:mcptt:key_management_server",
        "3gpp:mcvideo:key_management_server",
        "3gpp:mcdata:key_management_server",
    }
)
TOKEN_SCOPE = "3gpp:mc:ptt_key_management_service"


@dataclass(frozen=True)
class Profile:
    name: str
    # TrK-ID and Signature-ID elements in KmsResponse/KmsRequest (seed CR; not in r16).
    key_id_elements: bool
    lookup: bool
    accepted_scopes: frozenset[str]


PROFILES = {
    "ts33180-r17": Profile("ts33180-r17", True, True, MC_SCOPES),
    "ts33180-r16": Profile("ts33180-r16", False, False, MC_SCOPES | OLDER_SCOPES),
}
DEFAULT_PROFILE = "ts33180-r17"
