"""Big-integer backend: gmpy2's mpz when installed, plain int otherwise.

Set ``KMS_CONFORMANCE_PURE_PYTHON=1`` to force plain ints (the benchmarks compare both).
All functions accept and return values usable as ints; callers convert results with
``int()`` at API boundaries so that no mpz leaks out of the crypto layer.
"""

from __future__ import annotations

import os
from typing import Any

try:  # pragma: no cover - gmpy2 is a dependency where a wheel exists (pyproject.toml)
    if os.environ.get("KMS_CONFORMANCE_PURE_PYTHON"):
        raise ImportError("pure Python requested")
    import gmpy2

    HAVE_GMPY2 = True

    def mpz(x: int) -> Any:
        return gmpy2.mpz(x)

    def invert(x: Any, m: Any) -> Any:
        return gmpy2.invert(x, m)

except ImportError:
    HAVE_GMPY2 = False

    def mpz(x: int) -> Any:
        return int(x)

    def invert(x: Any, m: Any) -> Any:
        return pow(x, -1, m)


BACKEND = "gmpy2" if HAVE_GMPY2 else "python"
