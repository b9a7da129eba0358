"""The plain-int crypto backend (no gmpy2) still gives the right answers (issue 15 item 4).

gmpy2 is a dependency where a wheel exists; elsewhere, or with
``KMS_CONFORMANCE_PURE_PYTHON=1``, conformance/crypto/_arith.py falls back to Python ints.
This runs the key-set checks of the test vectors in a subprocess that selects that
fallback, so the pure path is exercised even on a machine with gmpy2 installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = r"""
import json, sys
from conformance.crypto import _arith, eccsi, sakke, uid
k = json.load(open(sys.argv[1]))["keysets"][0]
z, kpak = bytes.fromhex(k["PubEncKey"]), bytes.fromhex(k["PubAuthKey"])
user_id, rsk = bytes.fromhex(k["UserID"]), bytes.fromhex(k["RSK"])
ssk, pvt = bytes.fromhex(k["SSK"]), bytes.fromhex(k["PVT"])
tampered = bytearray(rsk); tampered[-1] ^= 1
issued = sakke.issue_rsk(int(k["z_T"], 16), user_id)
print(json.dumps({
    "backend": _arith.BACKEND,
    "gmpy2_loaded": "gmpy2" in sys.modules,
    "rsk_valid": sakke.validate_rsk(z, user_id, rsk),
    "tampered_rsk_valid": sakke.validate_rsk(z, user_id, bytes(tampered)),
    "issued_matches": bytes(issued) == rsk,
    "ssk_valid": eccsi.validate_signing_keys(kpak, user_id, ssk, pvt),
    "other_user_ssk_valid": eccsi.validate_signing_keys(kpak, b"\x00" * 32, ssk, pvt),
    "uid_matches": uid.mikey_sakke_uid(
        k["UserUri"], k["KmsUri"], k["period"], k["offset"], k["KeyPeriodNo"]
    ) == user_id,
}))
"""


def _run(extra_env: dict[str, str]) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "KMS_CONFORMANCE_PURE_PYTHON"}
    env.update({"PYTHONPATH": str(ROOT), **extra_env})
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(ROOT / "tests/vectors/keysets.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_pure_python_backend_validates_and_rejects_like_gmpy2() -> None:
    pure = _run({"KMS_CONFORMANCE_PURE_PYTHON": "1"})
    assert pure["backend"] == "python" and pure["gmpy2_loaded"] is False
    assert pure["rsk_valid"] is True and pure["tampered_rsk_valid"] is False
    assert pure["ssk_valid"] is True and pure["other_user_ssk_valid"] is False
    assert pure["issued_matches"] is True and pure["uid_matches"] is True
    default = _run({})
    if importlib.util.find_spec("gmpy2") is not None:  # installed: it is the default
        assert default["backend"] == "gmpy2"
    assert {k: v for k, v in default.items() if k not in ("backend", "gmpy2_loaded")} == {
        k: v for k, v in pure.items() if k not in ("backend", "gmpy2_loaded")
    }
