"""What a load run writes and prints: load.json, load.html, the summary, the exit status.

load.json is versioned like results.json (``"schema": "kms-conformance/load/1"``); Locust's
own CSV (locust_stats.csv, locust_stats_history.csv, locust_failures.csv,
locust_exceptions.csv) and HTML (locust.html) sit beside it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from conformance import __version__

SCHEMA = "kms-conformance/load/1"
EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_INCONC = 0, 1, 2, 3


@dataclass(frozen=True)
class Thresholds:
    max_p95_ms: float | None = None
    min_rps: float | None = None
    max_error_rate: float | None = None


def request_stats(environment: Any) -> dict[str, Any]:
    """Requests/s, error rate and p50/p95/p99 per request type, from Locust's statistics."""
    stats = environment.stats
    by_type = {}
    for (name, method), entry in sorted(stats.entries.items()):
        by_type[name] = _entry(entry) | {"method": method}
    total = stats.total
    return {"total": _entry(total), "by_type": by_type}


def _entry(entry: Any) -> dict[str, Any]:
    count = int(entry.num_requests)
    failures = int(entry.num_failures)
    return {
        "count": count,
        "failures": failures,
        "error_rate": failures / count if count else 0.0,
        "rps": float(entry.total_rps),
        "p50_ms": float(entry.get_response_time_percentile(0.50) or 0),
        "p95_ms": float(entry.get_response_time_percentile(0.95) or 0),
        "p99_ms": float(entry.get_response_time_percentile(0.99) or 0),
        "avg_ms": float(entry.avg_response_time or 0),
    }


def evaluate(
    requests: Mapping[str, Any], conformance: Mapping[str, Any], thresholds: Thresholds
) -> tuple[list[dict[str, Any]], int, str]:
    """(threshold rows, exit status, one-line verdict reason)."""
    total = requests["total"]
    rows = []
    for name, limit, observed in (
        ("max_p95_ms", thresholds.max_p95_ms, total["p95_ms"]),
        ("min_rps", thresholds.min_rps, total["rps"]),
        ("max_error_rate", thresholds.max_error_rate, total["error_rate"]),
    ):
        if limit is None:
            continue
        held = observed >= limit if name == "min_rps" else observed <= limit
        rows.append({"name": name, "limit": limit, "observed": observed, "held": held})
    if total["count"] == 0:
        return rows, EXIT_CONFIG, "no request was made"
    if conformance["errors"]:
        return (
            rows,
            EXIT_CONFIG,
            f"the harness could not judge {conformance['errors']} iteration(s)",
        )
    if conformance["failed"]:
        first = next(iter(conformance["failures"]), "?")
        return rows, EXIT_FAIL, f"{conformance['failed']} iteration(s) failed the checks ({first})"
    broken = [r for r in rows if not r["held"]]
    if broken:
        r = broken[0]
        return (
            rows,
            EXIT_FAIL,
            f"threshold {r['name']} {r['limit']:g} not held ({r['observed']:.3g})",
        )
    if conformance["sampled"] and not conformance["checked"]:
        return rows, EXIT_INCONC, "every sampled iteration was dropped: nothing was checked"
    return rows, EXIT_OK, ""


def conformance_section(tally: Mapping[str, Any], iterations: int) -> dict[str, Any]:
    checked = int(tally["checked"])
    return {
        "sampled": int(tally["sampled"]),
        "checked": checked,
        "dropped": int(tally["dropped"]),
        "iterations": iterations,
        "failed": int(tally["failed"]),
        "failure_rate": int(tally["failed"]) / checked if checked else 0.0,
        "warned": int(tally["warned"]),
        "errors": int(tally["errors"]),
        "key_sets_validated": int(tally["key_sets_validated"]),
        "check_cpu_s": float(tally.get("check_cpu_s", 0.0)),
        "check_cpu_ms_per_iteration": (
            1000.0 * float(tally.get("check_cpu_s", 0.0)) / checked if checked else 0.0
        ),
        "failures": dict(sorted(tally["failures"].items(), key=lambda kv: -kv[1])),
        "examples": list(tally["examples"]),
    }


def write_load_json(path: Path, document: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def document(
    *,
    settings: Mapping[str, Any],
    target: Mapping[str, Any],
    mode: str,
    duration_s: float,
    checks_done_s: float,
    requests: Mapping[str, Any],
    conformance: Mapping[str, Any],
    processes: Sequence[Mapping[str, Any]],
    thresholds: Sequence[Mapping[str, Any]],
    exit_status: int,
    reason: str,
    problems: Sequence[str],
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool": {"name": "kms-conformance", "version": __version__},
        "finished": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "mode": mode,
        "duration_s": round(duration_s, 3),
        "checks_done_s": round(checks_done_s, 3),
        "settings": dict(settings),
        "target": dict(target),
        "requests": dict(requests),
        "conformance": dict(conformance),
        "processes": [dict(p) for p in processes],
        "thresholds": list(thresholds),
        "problems": list(problems),
        "verdict": "pass" if exit_status == EXIT_OK else "fail",
        "exit_status": exit_status,
        "reason": reason,
    }


def print_summary(doc: Mapping[str, Any], output: Path, out: TextIO) -> None:
    requests, conf = doc["requests"], doc["conformance"]
    total = requests["total"]
    print("", file=out)
    print(
        f"kms-conformance load: {total['count']} requests in {doc['duration_s']:.1f} s "
        f"({total['rps']:.1f}/s, {doc['mode']}, scenario {doc['settings']['scenario']}) "
        f"against {doc['target'].get('label') or doc['target'].get('base_url')}",
        file=out,
    )
    for name, row in requests["by_type"].items():
        print(
            f"  {name:22} {row['count']:7d} req {row['rps']:8.1f}/s  p50 {row['p50_ms']:6.0f} "
            f"p95 {row['p95_ms']:6.0f} p99 {row['p99_ms']:6.0f} ms  errors {row['error_rate']:.1%}",
            file=out,
        )
    print(
        f"  checks: {conf['checked']} of {conf['sampled']} sampled iterations checked, "
        f"{conf['dropped']} dropped (checker busy), {conf['failed']} failed "
        f"({conf['failure_rate']:.1%}), {conf['key_sets_validated']} key sets validated",
        file=out,
    )
    if conf["dropped"]:
        print(
            "  (dropped iterations were not checked: more --checkers per process, more "
            "workers, or a lower --check-sample check them all)",
            file=out,
        )
    for failure_id, count in list(conf["failures"].items())[:10]:
        print(f"  FAIL   {failure_id} x{count}", file=out)
    for example in conf["examples"][:3]:
        first = example["failures"][0]
        where = f" (evidence: {example['evidence']})" if example.get("evidence") else ""
        print(f"         {first['id']}: {first['message']}{where}", file=out)
    for row in doc["thresholds"]:
        mark = "ok  " if row["held"] else "FAIL"
        print(
            f"  {mark}   {row['name']} {row['limit']:g}: observed {row['observed']:.3g}", file=out
        )
    for problem in doc["problems"]:
        print(f"  note: {problem}", file=out)
    verdict = doc["verdict"].upper() + (f": {doc['reason']}" if doc["reason"] else "")
    print(f"  verdict: {verdict}", file=out)
    print(f"  reports: {output}/ (load.json, load.html, locust.html, locust_*.csv)", file=out)


def write_load_html(path: Path, doc: Mapping[str, Any]) -> None:
    e = html.escape
    requests, conf = doc["requests"], doc["conformance"]
    rows = "".join(
        f"<tr><td>{e(name)}</td><td>{r['count']}</td><td>{r['failures']}</td>"
        f"<td>{r['rps']:.1f}</td><td>{r['p50_ms']:.0f}</td><td>{r['p95_ms']:.0f}</td>"
        f"<td>{r['p99_ms']:.0f}</td></tr>"
        for name, r in [*requests["by_type"].items(), ("all", requests["total"])]
    )
    failures = (
        "".join(
            f"<tr><td>{e(fid)}</td><td>{count}</td></tr>" for fid, count in conf["failures"].items()
        )
        or "<tr><td colspan=2>none</td></tr>"
    )
    examples = "".join(
        "<li>"
        + "; ".join(f"<b>{e(f['id'])}</b>: {e(f['message'])}" for f in ex["failures"])
        + (f' (<a href="{e(ex["evidence"])}/case.json">evidence</a>)' if ex.get("evidence") else "")
        + "</li>"
        for ex in conf["examples"]
    )
    thresholds = (
        "".join(
            f"<tr><td>{e(t['name'])}</td><td>{t['limit']:g}</td><td>{t['observed']:.3g}</td>"
            f"<td>{'held' if t['held'] else 'NOT HELD'}</td></tr>"
            for t in doc["thresholds"]
        )
        or "<tr><td colspan=4>none given</td></tr>"
    )
    processes = "".join(
        f"<tr><td>{e(str(p['id']))}</td><td>{p['requests_total']}</td><td>{p['iterations']}</td>"
        f"<td>{p['sampled']}</td><td>{p['checked']}</td><td>{p['dropped']}</td>"
        f"<td>{p['failed']}</td><td>{p['key_sets_validated']}</td></tr>"
        for p in doc["processes"]
    )
    verdict = e(doc["verdict"].upper() + (f": {doc['reason']}" if doc["reason"] else ""))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kms-conformance load</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child{{text-align:left}}
.fail{{color:#b00}}.pass{{color:#070}}</style></head><body>
<h1>Conformance under load</h1>
<p class="{e(doc["verdict"])}"><b>Verdict: {verdict}</b></p>
<p>{e(str(doc["target"].get("label") or doc["target"].get("base_url")))}, scenario
{e(str(doc["settings"]["scenario"]))}, {doc["settings"]["users"]} users, {doc["mode"]},
{doc["duration_s"]:.1f} s, check sample {doc["settings"]["check_sample"]:g}.
Locust's own report: <a href="locust.html">locust.html</a>.</p>
<h2>Requests</h2><table><tr><th>type</th><th>requests</th><th>errors</th><th>req/s</th>
<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>{rows}</table>
<h2>Checks</h2><p>{conf["checked"]} of {conf["sampled"]} sampled iterations checked,
{conf["dropped"]} dropped because the checkers were busy (not checked), {conf["failed"]}
failed ({conf["failure_rate"]:.1%}), {conf["warned"]} with warnings, {conf["errors"]} harness
errors; {conf["key_sets_validated"]} key sets validated (pairing checks held).</p>
<table><tr><th>failure (case/step:check)</th><th>iterations</th></tr>{failures}</table>
<ul>{examples}</ul>
<h2>Thresholds</h2><table><tr><th>threshold</th><th>limit</th><th>observed</th><th></th></tr>
{thresholds}</table>
<h2>Load processes</h2><table><tr><th>process</th><th>requests</th><th>iterations</th>
<th>sampled</th><th>checked</th><th>dropped</th><th>failed</th><th>key sets</th></tr>{processes}
</table></body></html>
"""
    path.write_text(page, encoding="utf-8")
