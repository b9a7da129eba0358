"""``kms-conformance target --template``: a commented minimal target file (DESIGN.md 4).

The template is valid as it stands once ``KMS_TOKEN`` is set (``load_target`` reads it in
the tests): only ``[target] base_url`` and one ``[[users]]`` entry are required; every
other key is shown commented out, with what it does and what follows when it is left out.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

TEMPLATE = """\
# kms-conformance target file (TOML). Required: [target] base_url and one [[users]] entry
# with uri and a credential. Everything else is optional: what is left out makes the cases
# that need it n/a (with the reason), never fail. Secrets (token, trk, ink, secret header
# values) may be given inline, as *_env (an environment variable) or *_command (a shell
# command's output); they never reach a report, log or evidence file.

[target]
base_url = "https://kms.example.org/keymanagement/identity/v1"   # REQUIRED: up to .../v1
# verify_tls = true                # false: do not verify the KMS's certificate (debugging)
# ca_file = "ca.pem"               # CA that issued the KMS's TLS certificate (default: system)
# timeout_s = 10                   # per request
# max_body_bytes = 4194304         # a larger response is cut there and fails
# client_cert = "client.pem"       # TLS client certificate for every user (PEM) ...
# client_key = "client.key"        # ... and its key; passphrase from the environment:
# client_key_passphrase_env = "KMS_CLIENT_KEY_PASSPHRASE"
# identity_header = "X-3GPP-Asserted-Identity"  # a trusted proxy names the user in this
#                                  # header (value: users[].identity, default the user's uri)
# [target.headers]                 # fixed headers on every request:
# X-Tenant = "example"             #   a plain value
# X-Api-Key = { value_env = "KMS_API_KEY" }   # a secret (also value = / value_command =)

[profile]
# release = "ts33180-r17"          # or "ts33180-r16", "rel13-legacy"
# user_id_encoding = "base64"      # how KmsKeySet/UserID is written: "base64" or "hex"
# token_scope = "3gpp:mc:ptt_key_management_service"  # the KMS scope the tokens carry

[pics]
# What the KMS claims to support (PICS). A case whose PICS is not claimed is n/a.
# cert = true                      # KMS Cert: POST .../cert/<KMS URI> (Rel-17)
# lookup = false                   # KMS Lookup: POST .../lookup/<SIP URI> (Rel-17)
# redirect = false                 # Redirect upload: POST .../redirect with a KrrList
# encryption = "none"              # "message": KmsMessage encrypted with the TrK;
#                                  # "keys": each private key wrapped; "none": neither
# signing = false                  # responses are SignedKmsResponse (HMAC with TrK/InK)
# ink = false                      # an InK is provisioned (signatures use the InK)
# request_signing = false          # the KMS accepts and checks SignedKmsRequest
# certcache_incremental = false    # certcache/<n> answers relative to cache number n
# tk_ik_delivery = false           # the KMS delivers NewTransportKey / NewIntegrityKey
# trk_rotation = false             # init/keyprov deliver a new TrK (rotation cases)
# ink_rotation = false             # ... a new InK
# kms_cert_rotation = false        # the KMS's own certificate can be replaced during a run
#                                  # (needs pixit.kms_cert_rotation_command)

[pixit]
# What the tester knows about the KMS (PIXIT); each one enables the cases that need it.
# kms_uri = "kms.example.org"      # default: the KmsUri of the init certificate
# cert_uri = "cert1.kms.example.org"
# partner_kms_uris = ["kms.partner.example.net"]   # for certcache / cert cases
# unknown_kms_uri = "kms.unknown.invalid"
# lookup = [{ sip_uri = "sip:dave@partner.example.net", kms_uri = "kms.partner.example.net" }]
# unknown_sip_uri = "sip:nobody@unknown.invalid"
# kms_cert_rotation_command = "/opt/kms/bin/rekey-root"  # run as `<command> replace`: the
#                                  # KMS serves a new certificate (new master keys); as
#                                  # `<command> restore`: the original again. No secret on
#                                  # it (it is recorded); 60 s at most; exit != 0: inconc

[[users]]                          # REQUIRED: the UE under test
uri = "sip:alice@example.org"
token_env = "KMS_TOKEN"            # its Bearer access token (or token = / token_command =);
#                                  # leave it out when identity_header or a client
#                                  # certificate identifies the user (token cases are n/a)
# identity = "sip:alice@example.org"   # value of target.identity_header for this user
# headers = { X-Device = "d1" }        # this user's own fixed headers (override target's)
# client_cert = "alice.pem"            # this user's own TLS client certificate ...
# client_key = "alice.key"             # ... its key, and the key's passphrase:
# client_key_passphrase_env = "ALICE_KEY_PASSPHRASE"
# trk_id = "dHJrLjEuYWxpY2U="          # base64 TrK-ID and the TrK (hex, or trk_env):
# trk_env = "KMS_TRK"                  #   needed to read encrypted responses
# ink_id = "aW5rLjEuYWxpY2U="          # base64 InK-ID and the InK (hex, or ink_env):
# ink_env = "KMS_INK"                  #   needed to verify InK signatures

# [[users]]                        # optional second user: authorization cases
# uri = "sip:bob@example.org"
# token_env = "KMS_TOKEN_BOB"

[tokens]
# Optional tokens for the negative cases (each absent one makes its case n/a):
# expired_env = "KMS_TOKEN_EXPIRED"
# wrong_scope_env = "KMS_TOKEN_WRONG_SCOPE"
# malformed = "not-a-jwt"
# bad_signature_env = "KMS_TOKEN_BAD_SIGNATURE"

[clock]
# allowed_skew_s = 300             # how far KmsResponse Time may be from the harness clock
"""


def main(output: str | None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if output is None:
        out.write(TEMPLATE)
        return 0
    path = Path(output)
    if path.exists():
        print(f"kms-conformance target: {path} exists; not overwritten", file=err)
        return 2
    try:
        path.write_text(TEMPLATE, encoding="utf-8")
    except OSError as exc:
        print(f"kms-conformance target: cannot write {path} ({exc.strerror})", file=err)
        return 2
    print(f"wrote {path}", file=out)
    return 0
