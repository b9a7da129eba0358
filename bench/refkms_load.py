"""Reference KMS under load: requests/s and p50/p99 latency for init and keyprov.

Starts ``python -m refkms serve`` over HTTPS on loopback as its own process (as a user
would), waits for its target.toml, then drives it with an async httpx loop at several
concurrency levels. Prints a Markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import httpx

DURATION_S = 4.0
CONCURRENCY = (1, 8, 32)
ENDPOINTS = ("init", "keyprov")
TARGET_RPS = 50.0


def main() -> None:
    with tempfile.TemporaryDirectory() as state:
        server = subprocess.Popen(
            [sys.executable, "-m", "refkms", "serve", "--port", "0", "--state", state],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            target = _wait_for_target(Path(state) / "target.toml", server)
            rows = [
                (endpoint, clients, *asyncio.run(_drive(target, endpoint, clients)))
                for endpoint in ENDPOINTS
                for clients in CONCURRENCY
            ]
            baseline = _wrk_section(target, Path(state))
        finally:
            server.terminate()
            server.wait(10)
    print(_markdown(rows) + baseline)


def _wrk_section(target: dict[str, object], scratch: Path) -> str:
    """The raw baseline: the same requests driven by wrk, when it is on PATH."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return (
            "Raw baseline with `wrk`: skipped, `wrk` is not on PATH on this machine (not "
            "installed; Debian package `wrk`). When it is, this section lists requests/s and "
            "p50/p99 for the same rows.\n"
        )
    settings = target["target"]
    users = target["users"]
    assert isinstance(settings, dict) and isinstance(users, list)
    script = scratch / "post.lua"
    script.write_text('wrk.method = "POST"\n')
    lines = [
        f"Raw baseline with `wrk` ({wrk} -t1 -cN -d{DURATION_S:.0f}s --latency, POST, "
        "same bearer token; wrk does not verify the server certificate):",
        "",
        "| request | connections | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for endpoint in ENDPOINTS:
        for clients in CONCURRENCY:
            done = subprocess.run(
                [
                    wrk,
                    "-t1",
                    f"-c{clients}",
                    f"-d{DURATION_S:.0f}s",
                    "--latency",
                    "-s",
                    str(script),
                    "-H",
                    f"Authorization: Bearer {users[0]['token']}",
                    f"{settings['base_url']}/{endpoint}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            rps = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
            p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", done.stdout)
            p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", done.stdout)
            lines.append(
                f"| {endpoint} | {clients} | {rps.group(1) if rps else '?'} | "
                f"{_milliseconds(p50)} | {_milliseconds(p99)} |"
            )
    return "\n".join(lines) + "\n"


def _milliseconds(match: re.Match[str] | None) -> str:
    if match is None:
        return "?"
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return f"{float(match.group(1)) * scale:.1f}"


async def _drive(
    target: dict[str, object], endpoint: str, clients: int
) -> tuple[float, float, float, int]:
    settings = target["target"]
    assert isinstance(settings, dict)
    users = target["users"]
    assert isinstance(users, list)
    url = f"{settings['base_url']}/{endpoint}"
    headers = {"Authorization": f"Bearer {users[0]['token']}"}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + DURATION_S
    async with httpx.AsyncClient(verify=str(settings["ca_file"]), timeout=30) as client:
        await client.post(url, headers=headers)  # warm-up: RSK cache, TLS session

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post(url, headers=headers)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(latencies) / elapsed, statistics.median(ordered) * 1000, p99 * 1000, errors


def _wait_for_target(path: Path, server: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            return tomllib.loads(path.read_text())
        if server.poll() is not None:
            raise SystemExit(f"refkms exited with status {server.returncode} before it listened")
        time.sleep(0.1)
    raise SystemExit("refkms did not write target.toml within 60 s")


def _markdown(rows: list[tuple[str, int, float, float, float, int]]) -> str:
    lines = [
        "## reference KMS under load",
        "",
        f"Command: `make bench` (bench/refkms_load.py): `python -m refkms serve` over HTTPS on "
        f"loopback in its own process (default config: signing on, encryption off), driven for "
        f"{DURATION_S:.0f} s per row by an async httpx loop in this process with N concurrent "
        "clients sharing one connection pool. Client and server share the 2 cores.",
        "",
        "| request | clients | requests/s | p50 ms | p99 ms | non-200 |",
        "|---|---|---|---|---|---|",
    ]
    for endpoint, clients, rps, p50, p99, errors in rows:
        lines.append(f"| {endpoint} | {clients} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {errors} |")
    keyprov_8 = next(r for r in rows if r[0] == "keyprov" and r[1] == 8)
    verdict = "met" if keyprov_8[2] >= TARGET_RPS else "MISSED"
    lines += [
        "",
        f"Target (issue 3 / issue 7: keyprov >= {TARGET_RPS:.0f} requests/s at 8 clients): "
        f"{keyprov_8[2]:.0f} requests/s, {verdict}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
