"""Where the data the harness reads lives: the case catalogue and the XSDs.

In a checkout (and an editable install) they are ``testcases/`` and ``schemas/`` at the top
of the repository (DESIGN.md section 1); a wheel carries them inside the package as
``conformance/_catalogue`` and ``conformance/_schemas`` (pyproject.toml package-dir).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # conformance/, above core/
_IN_WHEEL = {"testcases": "_catalogue", "schemas": "_schemas"}


def data_dir(name: str) -> Path:
    """``testcases`` or ``schemas``: the repository folder when there is one, else the copy
    installed with the package."""
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    return _PACKAGE / _IN_WHEEL[name]
