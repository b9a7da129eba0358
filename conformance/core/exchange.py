"""One recorded HTTP exchange with a target KMS (DESIGN.md section 2).

The probe fills an ``Exchange`` for every request it sends; checks, the evidence writer and
``replay`` read it. A transport failure (timeout, TLS, refused connection, oversized body)
is recorded in ``error`` with a one-line reason instead of being raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TlsFacts:
    """What the TLS handshake showed about the target."""

    version: str | None = None
    cipher: str | None = None
    peer_subject: str | None = None
    peer_issuer: str | None = None
    peer_san: tuple[str, ...] = ()
    peer_not_after: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """The request exactly as sent (headers include the real Authorization value;
    redaction happens when anything is written)."""

    method: str
    url: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    token_variant: str = "valid"
    body_variant: str = "none"


@dataclass
class Exchange:
    label: str
    request: RecordedRequest
    status: int | None = None
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    truncated: bool = False
    elapsed_s: float = 0.0
    http_version: str = ""
    tls: TlsFacts | None = None
    error: str | None = None
    error_kind: str | None = None  # timeout | tls | connect | too-large | protocol | usage
    notes: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first response header of that name (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def content_type(self) -> str:
        value = self.header("content-type") or ""
        return value.split(";", 1)[0].strip().lower()

    @property
    def answered(self) -> bool:
        return self.error is None and self.status is not None
