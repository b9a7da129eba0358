"""Exception types of the crypto layer.

Callers catch ``CryptoError`` to turn any bad input into a one-line verdict reason; the
subclasses say what kind of input was wrong.
"""


class CryptoError(ValueError):
    """Base class: the input cannot be processed by this primitive."""


class InvalidEncoding(CryptoError):
    """Bytes, hex or base64 of the wrong length or form."""


class InvalidPoint(CryptoError):
    """A point that is not on the curve, not in the subgroup, or the point at infinity."""


class UnsupportedAlgorithm(CryptoError):
    """An algorithm URI or parameter this layer does not implement."""


class DecryptionError(CryptoError):
    """Decryption or key unwrap failed (wrong key, corrupted data, bad tag)."""
