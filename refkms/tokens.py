"""MC access tokens: ES256 JWTs minted and verified by the reference KMS (Annex B, RFC 6750).

The KMS plays the identity management server too: it signs the tokens it writes into
target.toml with a key kept in the state directory. Time claims are judged on the KMS's
own clock (which tests may fix), not on the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ES256"
SERVICE_ID_CLAIMS = ("mcptt_id", "mcvideo_id", "mcdata_id")
TOKEN_LIFETIME = timedelta(days=30)
WRONG_SCOPE = "3gpp:mc:ptt_service openid"


class TokenRejected(Exception):
    """Why a bearer token is refused, with the RFC 6750 status and error code."""

    def __init__(self, status: int, error: str | None, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class TokenPolicy:
    """What the KMS accepts; each ``accept_*`` switch exists for one fault."""

    accepted_scopes: frozenset[str]
    accept_expired: bool = False
    accept_bad_signature: bool = False
    accept_wrong_scope: bool = False


class TokenAuthority:
    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        audience: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    def mint(self, user_uri: str, scope: str, lifetime: timedelta = TOKEN_LIFETIME) -> str:
        now = self._clock()
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_uri,
            "mcptt_id": user_uri,
            "scope": scope,
            "iat": int(now.timestamp()),
            "exp": int((now + lifetime).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def mint_negative_cases(self, user_uri: str, scope: str) -> dict[str, str]:
        """Tokens the harness sends to prove refusals (DESIGN.md section 4, [tokens])."""
        expired = self.mint(user_uri, scope, lifetime=-timedelta(hours=1))
        valid = self.mint(user_uri, scope)
        forged = ec.generate_private_key(ec.SECP256R1())
        header, payload, _ = valid.split(".")
        _, _, forged_signature = jwt.encode(
            jwt.decode(valid, options={"verify_signature": False}), forged, algorithm=ALGORITHM
        ).split(".")
        return {
            "expired": expired,
            "wrong_scope": self.mint(user_uri, WRONG_SCOPE),
            "malformed": "not-a-jwt." + payload[:16],
            "bad_signature": f"{header}.{payload}.{forged_signature}",
        }

    def verify(self, authorization: str | None, policy: TokenPolicy) -> str:
        """The MC service ID of a valid bearer token; ``TokenRejected`` otherwise."""
        token = _bearer_token(authorization)
        claims = self._decode(token, policy)
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            raise TokenRejected(401, "invalid_token", "the access token has no numeric exp claim")
        if not policy.accept_expired and expires <= self._clock().timestamp():
            raise TokenRejected(401, "invalid_token", "the access token has expired")
        scopes = set(str(claims.get("scope", "")).split())
        if not policy.accept_wrong_scope and not scopes & policy.accepted_scopes:
            raise TokenRejected(403, "insufficient_scope", "the token lacks the KMS scope")
        for name in SERVICE_ID_CLAIMS:
            if isinstance(claims.get(name), str) and claims[name]:
                return str(claims[name])
        raise TokenRejected(401, "invalid_token", "the token carries no MC service ID")

    def _decode(self, token: str, policy: TokenPolicy) -> dict[str, Any]:
        options: Any = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
        try:
            if policy.accept_bad_signature:
                options["verify_signature"] = False
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options=options,
            )
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(
                401, "invalid_token", f"the access token is invalid: {exc}"
            ) from exc
        if not isinstance(claims, dict):
            raise TokenRejected(401, "invalid_token", "the token claims are not an object")
        return claims


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise TokenRejected(401, None, "no access token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected(401, None, "the Authorization header carries no Bearer token")
    return token.strip()
