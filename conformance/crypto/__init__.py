"""Crypto leaf layer: Annex F UID, key periods, ECCSI, SAKKE, XML encryption and signature.

Nothing here knows about HTTP or about KMS message structure beyond the XML security
elements. Every primitive is pinned by known-answer tests under ``tests/vectors/``.
"""

from conformance.crypto.errors import (
    CryptoError,
    DecryptionError,
    InvalidEncoding,
    InvalidPoint,
    UnsupportedAlgorithm,
)

__all__ = [
    "CryptoError",
    "DecryptionError",
    "InvalidEncoding",
    "InvalidPoint",
    "UnsupportedAlgorithm",
]
