"""target.toml: the complete target description of a running reference KMS (DESIGN.md 4).

Written with a small TOML writer of its own (the standard library only reads TOML).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from refkms import certchange
from refkms.domain import Domain, User
from refkms.files import write_atomically
from refkms.profiles import TOKEN_SCOPE

UNKNOWN_KMS_URI = "kms.unknown.example"
UNKNOWN_SIP_URI = "sip:nobody@unknown.example"
RESPONSE_BODY_CAP = 4 * 1024 * 1024
ALLOWED_SKEW_S = 300


def target_description(domain: Domain, base_url: str, ca_file: Path | None) -> dict[str, Any]:
    config, policy = domain.config, domain.config.protection
    rotates = domain.profile.key_id_elements
    users = list(domain.users.values())
    first = users[0]
    target: dict[str, Any] = {"base_url": base_url, "verify_tls": ca_file is not None}
    if ca_file is not None:
        target["ca_file"] = str(ca_file.resolve())
    target |= {"timeout_s": 10.0, "max_body_bytes": RESPONSE_BODY_CAP}
    return {
        "target": target,
        "profile": {
            "release": domain.profile.name,
            "user_id_encoding": config.user_id_encoding,
            "token_scope": TOKEN_SCOPE,
        },
        "pics": {
            "cert": True,
            "lookup": domain.profile.lookup,
            "redirect": True,
            "encryption": policy.encryption,
            "signing": policy.signing,
            "ink": first.ink is not None,
            "request_signing": True,
            "certcache_incremental": True,
            # New keys go to requests that name the UE's TrK (TrK-ID: Rel-17 profiles).
            "tk_ik_delivery": rotates and (policy.rotate_trk or policy.rotate_ink),
            "trk_rotation": rotates and policy.rotate_trk,
            "ink_rotation": rotates and policy.rotate_ink,
            # `serve --cert-rotation`: the harness has the KMS replace its own certificate
            # with pixit.kms_cert_rotation_command (refkms.certchange).
            "kms_cert_rotation": config.kms_cert_rotation,
        },
        "pixit": {
            "kms_uri": config.kms_uri,
            "cert_uri": config.cert_uri,
            "partner_kms_uris": [c.kms_uri for c in domain.partner_certificates],
            "unknown_kms_uri": UNKNOWN_KMS_URI,
            "lookup": [{"sip_uri": sip, "kms_uri": kms} for sip, kms in config.lookup],
            "unknown_sip_uri": UNKNOWN_SIP_URI,
        }
        | (
            {"kms_cert_rotation_command": certchange.command(domain.state_path)}
            if config.kms_cert_rotation
            else {}
        ),
        "users": [
            {"uri": user.uri, "token": domain.tokens.mint(user.uri, TOKEN_SCOPE)} | _keys(user)
            for user in users
        ],
        "keys": _keys(first),
        "tokens": domain.tokens.mint_negative_cases(first.uri, TOKEN_SCOPE),
        "clock": {"allowed_skew_s": ALLOWED_SKEW_S},
    }


# What a vendor copying this file for another KMS may drop (issue 11 item 7).
HEADER = """\
# target.toml written by the reference KMS (kms-conformance serve) for itself: every PICS
# it supports is claimed and every optional table is filled. A target file for another KMS
# needs far less. Required: [target] base_url and one [[users]] entry (uri and a token, or
# target.identity_header / a client certificate instead of the token). Optional, may be
# dropped: [profile] (default release ts33180-r17); [pics] (a PICS left out is not claimed
# and its cases are n/a); [pixit] (the cases that need an entry become n/a); [keys] (TrK/InK
# of the UE: needed only for encrypted or signed responses); a second [[users]] entry
# (authorization cases); [tokens] (negative-token cases); [clock]. Secrets may be given as
# *_env or *_command instead of inline. `kms-conformance target --template` writes a
# commented minimal file.

"""


def write_target(path: Path, description: dict[str, Any]) -> None:
    write_atomically(path, (HEADER + dump_toml(description)).encode("utf-8"))


def dump_toml(document: dict[str, Any]) -> str:
    """TOML text of tables (dicts) and arrays of tables (lists of dicts) of plain values."""
    lines: list[str] = []
    for name, value in document.items():
        tables = value if isinstance(value, list) else [value]
        header = f"[[{name}]]" if isinstance(value, list) else f"[{name}]"
        for table in tables:
            lines.append(header)
            lines.extend(f"{key} = {_value(item)}" for key, item in table.items())
            lines.append("")
    return "\n".join(lines)


def _keys(user: User) -> dict[str, str]:
    keys = {"trk_id": _b64(user.trk_id), "trk": user.trk.hex()}
    if user.ink is not None and user.ink_id is not None:
        keys |= {"ink_id": _b64(user.ink_id), "ink": user.ink.hex()}
    return keys


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string for the characters used here.
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")
