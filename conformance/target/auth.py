"""How the probe tells the KMS who is asking, besides a Bearer token (issue 11 item 7).

Real deployments authenticate a UE in several ways, each per target and per user in the
target file (DESIGN.md 4): a Bearer access token (``users[].token``), an identity header
set by a trusted proxy (``target.identity_header``, value ``users[].identity`` or the
user's URI), fixed extra headers (``target.headers``, ``users[].headers``; values may be
secrets from env or a command), and a TLS client certificate (``target.client_cert`` /
``users[].client_cert`` with ``client_key`` and ``client_key_passphrase_env``).

Secret header values and key passphrases are handed to the redactor like tokens are.
"""

from __future__ import annotations

import ssl

from conformance.target.file import Target, TargetSettings, User
from conformance.verdicts.results import SecretValue


def credential_headers(target: Target, user: User) -> dict[str, str]:
    """The headers that say who ``user`` is, besides Authorization: the target's fixed
    headers, the identity header, then the user's own headers (which win)."""
    headers = {h.name: h.value.text() for h in target.target.headers}
    if target.target.identity_header:
        headers[target.target.identity_header] = user.identity or user.uri
    headers.update({h.name: h.value.text() for h in user.headers})
    return headers


def other_means(target: Target, user: User) -> str | None:
    """What identifies ``user`` when it has no token, or None when nothing does."""
    if target.target.identity_header:
        return f"identity header {target.target.identity_header}"
    if user.client_cert is not None or target.target.client_cert is not None:
        return "TLS client certificate"
    if user.headers:
        return "its own headers in the target file"
    return None


def tls_context(target: Target, user: User | None = None) -> ssl.SSLContext:
    """The client TLS context for ``user`` (its own certificate, else the target's)."""
    settings = target.target
    if not settings.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif settings.ca_file is not None:
        context = ssl.create_default_context(cafile=str(settings.ca_file))
    else:
        context = ssl.create_default_context()
    owner: User | TargetSettings = settings
    if user is not None and user.client_cert is not None:
        owner = user
    cert, key, passphrase = owner.client_cert, owner.client_key, owner.client_key_passphrase
    if cert is not None:
        context.load_cert_chain(
            str(cert),
            str(key) if key is not None else None,
            password=passphrase.reveal() if passphrase is not None else None,
        )
    return context


def has_own_certificate(user: User) -> bool:
    return user.client_cert is not None


def auth_secrets(target: Target) -> list[SecretValue]:
    """Secret header values and key passphrases, for the redactor."""
    found: list[SecretValue] = []
    tables = [("target", target.target.headers)]
    tables += [(f"user{i}", u.headers) for i, u in enumerate(target.users, start=1)]
    for owner, headers in tables:
        for header in headers:
            if header.secret:
                label = f"header-{owner}-{header.name.lower()}"
                found.append(SecretValue(label, header.value.reveal()))
    passphrases = [target.target.client_key_passphrase]
    passphrases += [u.client_key_passphrase for u in target.users]
    for passphrase in passphrases:
        if passphrase is not None:
            found.append(SecretValue("client-key-passphrase", passphrase.reveal()))
    return [s for s in found if s.value]
