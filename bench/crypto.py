"""Crypto benchmarks: one key-set check's primitives, timed on the backend of this process.

Run by bench/run.py twice, once with gmpy2 and once with KMS_CONFORMANCE_PURE_PYTHON=1.
Standalone: ``python bench/crypto.py`` prints JSON (see bench/run.py for the format).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from conformance.crypto import _arith, eccsi, sakke, uid
from conformance.xmlsec import xmlenc

KEYSET = json.loads(
    (Path(__file__).resolve().parent.parent / "tests/vectors/keysets.json").read_text()
)["keysets"][0]
GCM_MESSAGE_OCTETS = 10 * 1024


def main() -> None:
    print(json.dumps({"backend": _arith.BACKEND, "results": run()}, indent=2))


def run() -> list[dict[str, object]]:
    """Each entry: name, what it does, repetitions and timing statistics in milliseconds."""
    slow = 10 if _arith.BACKEND == "python" else 40
    z = bytes.fromhex(KEYSET["PubEncKey"])
    user_id = bytes.fromhex(KEYSET["UserID"])
    rsk = bytes.fromhex(KEYSET["RSK"])
    z_master = int(KEYSET["z_T"], 16)
    kpak = bytes.fromhex(KEYSET["PubAuthKey"])
    ssk = bytes.fromhex(KEYSET["SSK"])
    pvt = bytes.fromhex(KEYSET["PVT"])
    encrypted = _encrypted_message()
    trk = bytes(range(16))
    return [
        _measure(
            "validate_rsk",
            "SAKKE RSK check, one pairing (sakke.validate_rsk)",
            slow,
            lambda: _require(sakke.validate_rsk(z, user_id, rsk)),
        ),
        _measure(
            "issue_rsk",
            "SAKKE RSK issue (sakke.issue_rsk)",
            slow,
            lambda: sakke.issue_rsk(z_master, user_id),
        ),
        _measure(
            "validate_signing_keys",
            "ECCSI SSK/PVT check (eccsi.validate_signing_keys)",
            slow * 5,
            lambda: _require(eccsi.validate_signing_keys(kpak, user_id, ssk, pvt)),
        ),
        _measure(
            "mikey_sakke_uid",
            "Annex F UID (uid.mikey_sakke_uid)",
            2000,
            lambda: uid.mikey_sakke_uid(
                KEYSET["UserUri"],
                KEYSET["KmsUri"],
                KEYSET["period"],
                KEYSET["offset"],
                KEYSET["KeyPeriodNo"],
            ),
        ),
        _measure(
            "aes128gcm_decrypt_10kB",
            "xmlenc.decrypt_content of a 10 kB EncryptedData",
            500,
            lambda: xmlenc.decrypt_content(encrypted, trk),
        ),
    ]


def _measure(
    name: str, what: str, repetitions: int, call: Callable[[], object]
) -> dict[str, object]:
    call()  # first call builds lazy tables and caches (validate_public_key); not timed
    samples = []
    for _ in range(repetitions):
        # CPU time of this process: wall time on a shared 2-core machine measures the load.
        start = time.process_time()
        call()
        samples.append((time.process_time() - start) * 1000)
    quartiles = statistics.quantiles(samples, n=4)
    return {
        "name": name,
        "what": what,
        "n": repetitions,
        "median_ms": statistics.median(samples),
        "q1_ms": quartiles[0],
        "q3_ms": quartiles[2],
        "min_ms": min(samples),
        "max_ms": max(samples),
    }


def _require(result: bool) -> None:
    if not result:
        raise SystemExit("benchmark input failed validation: the figures would be meaningless")


def _encrypted_message() -> etree._Element:
    element = etree.Element("KmsMessage")
    etree.SubElement(element, "Payload").text = "A" * GCM_MESSAGE_OCTETS
    return xmlenc.encrypt_content(element, bytes(range(16)), b"trk-id")


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
