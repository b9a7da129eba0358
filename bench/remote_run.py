"""A full run against a remote KMS: the reference KMS behind a latency proxy (issue 15).

The reference KMS is started once (runcmd.embedded_kms, not timed); bench/latency_proxy.py
sits in front of it on loopback and delays every byte by DELAY_S each way; a copy of the
KMS's target file points at the proxy. ``kms-conformance run --target`` that file is then
timed serially and with ``-n 8`` (eight concurrent lanes), as a user starts it (a
subprocess; median of RUNS). Prints a Markdown section.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from latency_proxy import LatencyProxy  # noqa: E402

DELAY_S = 0.020
RUNS = 2
WORKERS = 8
TARGET_SPEEDUP = 4.0
OUT_BASE = ROOT / "reports"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(target: Path, extra: list[str], proxy: LatencyProxy) -> dict[str, float]:
    walls, cpus, sessions, codes, connections = [], [], [], [], []
    OUT_BASE.mkdir(exist_ok=True)
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="bench-", dir=OUT_BASE) as out:
            cpu0 = _cpu()
            opened = proxy.connections
            started = time.perf_counter()
            argv = [sys.executable, "-m", "conformance.run.cli", "run", "--target", str(target)]
            done = subprocess.run(
                [*argv, "--output", out, *extra],
                capture_output=True,
                cwd=ROOT,
            )
            walls.append(time.perf_counter() - started)
            cpus.append(_cpu() - cpu0)
            connections.append(proxy.connections - opened)
            codes.append(done.returncode)
            try:
                document = json.loads((Path(out) / "results.json").read_text())
                sessions.append(float(document["duration_s"]))
                exchanges = sum(
                    len(list((Path(out) / "evidence" / c["id"]).glob("*/response.txt")))
                    for c in document["cases"]
                )
            except (OSError, ValueError, KeyError):
                sessions.append(0.0)
                exchanges = 0
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "session": statistics.median(sessions),
        "code": max(codes),
        "exchanges": exchanges,
        "connections": statistics.median(connections),
    }


def main() -> None:
    from conformance.run.runcmd import embedded_kms

    with embedded_kms([]) as (target_file, _label):
        text = target_file.read_text()
        found = re.search(r'base_url\s*=\s*"https?://[^:/"]+:(\d+)', text)
        if found is None:
            raise SystemExit("the embedded KMS's target file has no base_url with a port")
        port = int(found.group(1))
        with LatencyProxy(("127.0.0.1", port), DELAY_S) as proxy:
            proxied = target_file.parent / "target-via-latency-proxy.toml"
            proxied.write_text(text.replace(f":{port}/", f":{proxy.port}/", 1))
            serial = _time(proxied, [], proxy)
            parallel = _time(proxied, ["-n", str(WORKERS)], proxy)
    speedup = serial["wall"] / parallel["wall"] if parallel["wall"] else 0.0
    met = speedup >= TARGET_SPEEDUP
    lines = [
        "## Remote KMS: 20 ms each way",
        "",
        "Command: `python bench/remote_run.py` (part of `make bench`): the reference KMS",
        f"behind bench/latency_proxy.py ({DELAY_S * 1000:.0f} ms added each way, TLS passed",
        "through), `kms-conformance run --target` a target file pointing at the proxy, in a",
        f"subprocess, median of {RUNS} runs; the KMS's start is not timed.",
        "",
        "| Measure | serial | `-n 8` | Target | Met |",
        "|---|---|---|---|---|",
        f"| wall time | {serial['wall']:.1f} s | {parallel['wall']:.1f} s | | |",
        f"| pytest session (results.json duration_s) | {serial['session']:.1f} s | "
        f"{parallel['session']:.1f} s | | |",
        f"| CPU time, harness + KMS processes | {serial['cpu']:.1f} s | {parallel['cpu']:.1f} s "
        "| | |",
        f"| exchanges recorded | {serial['exchanges']:.0f} | {parallel['exchanges']:.0f} | | |",
        f"| TCP connections (TLS handshakes) through the proxy | {serial['connections']:.0f} | "
        f"{parallel['connections']:.0f} | | |",
        f"| speedup of `-n 8` | | {speedup:.2f}x | >= {TARGET_SPEEDUP:.0f}x | "
        f"{'yes' if met else 'no'} |",
        f"| exit statuses | {serial['code']:.0f} | {parallel['code']:.0f} | 0 | "
        f"{'yes' if not (serial['code'] or parallel['code']) else 'no'} |",
    ]
    if not met and parallel["wall"]:
        fixed = parallel["wall"] - parallel["session"]
        ideal = serial["session"] / WORKERS
        busy = max(0.0, parallel["cpu"] - fixed) / (os.cpu_count() or 1)
        bound = serial["wall"] / (fixed + max(ideal, busy))
        lines += [
            "",
            f"`-n 8` misses {TARGET_SPEEDUP:.0f}x ({speedup:.2f}x): of its "
            f"{parallel['wall']:.1f} s, {fixed:.1f} s is",
            "outside the session (start-up, imports, catalogue, pytest collection, reports),",
            f"and the session ({parallel['session']:.1f} s) cannot be shorter than the waiting",
            f"spread over eight lanes ({serial['session']:.1f} / 8 = {ideal:.1f} s) nor than the",
            "CPU the lanes, the run's process and the KMS spend in it spread over the",
            f"machine's cores (about {busy:.1f} s). Bound on these figures: {bound:.2f}x.",
        ]
    lines.append("")
    print("\n".join(lines))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
