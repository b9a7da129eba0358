"""Evidence files: every exchange of a case, as sent and received, redacted (DESIGN.md 6).

``evidence/<case-id>/`` holds, per step ``NN-<label>/``: ``request.txt`` (request line,
headers, blank line, body), ``request.body``, ``response.txt`` (status line, headers, body;
or the transport error), ``response.body`` and, when the KmsMessage was decrypted,
``plaintext.xml``. Beside them: ``case.json`` (verdict, checks, what each step sent) and
``repro.sh``, one curl per step that repeats the case with secrets taken from the
environment (``KMS_TOKEN``..., ``KMS_HEADER_<NAME>`` for a secret header) instead of the
redacted values.

A run writes each case's evidence as the case ends (``spill_case``, in whichever process
ran it) and keeps only digests, sizes and short redacted excerpts of its bodies in memory,
so a target that answers every request at the body cap costs one body at a time, not the
whole run. ``request.txt``/``response.txt`` repeat a body only up to ``INLINE_BODY_BYTES``
(beyond, a line points at the ``.body`` file), and the bodies of a whole run share one
budget, ``limits.max_evidence_bytes`` (``EvidenceBudget``): past it a body file holds only
what fits, and the case, its case.json, results.json and report.html say so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shlex
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conformance.core.exchange import Exchange, RecordedRequest
from conformance.report.redact import Redactor, is_marker, key_material, redacted_at_capture
from conformance.report.results_json import case_fields, check_dict, redact_tree, to_bytes
from conformance.verdicts.results import BodyFacts, CaseResult, StepRecord

try:  # POSIX: the processes of one run (pytest-xdist workers) share the budget exactly
    import fcntl
except ImportError:  # pragma: no cover - elsewhere each process counts its own share
    fcntl = None  # type: ignore[assignment]

# A body up to this size is repeated in request.txt / response.txt; a larger one only in
# its .body file (written once).
INLINE_BODY_BYTES = 64 * 1024
# What stays in memory of each body once its evidence is written: report.html shows
# 4000 characters of it and Allure attaches it.
EXCERPT_BYTES = 16 * 1024
# A body cut for the budget is redacted over this much more than is kept, so that a secret
# that straddles the cut is replaced whole before the cut (no secret is longer).
_REDACTION_MARGIN = 64 * 1024
LEDGER_NAME = ".evidence-budget"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME = 100
# A URL origin that may sit unquoted inside a ${VAR:-default} of a double-quoted word.
_PLAIN_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.\-]+(?::[0-9]+)?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]+)?"
)
# Headers curl computes itself, or that would be wrong against another target.
_CURL_OWN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
)


def safe_name(name: str) -> str:
    """``name`` usable as one path segment: only [A-Za-z0-9._-], never ``.``/``..``/hidden."""
    cleaned = _UNSAFE.sub("_", name)[:_MAX_NAME]
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned


def case_dirs(case_ids: Iterable[str]) -> dict[str, str]:
    """A distinct directory name for each case id (ids differing only in unsafe characters
    get a numeric suffix)."""
    dirs: dict[str, str] = {}
    used: set[str] = set()
    for case_id in case_ids:
        if case_id in dirs:
            continue
        base = safe_name(case_id)
        name, n = base, 2
        while name.lower() in used:  # case-insensitive file systems
            name, n = f"{base}-{n}", n + 1
        used.add(name.lower())
        dirs[case_id] = name
    return dirs


def step_dir(index: int, step: StepRecord) -> str:
    return f"{index:02d}-{safe_name(step.label or step.exchange.label or 'step')}"


class EvidenceBudget:
    """The octets of evidence a run may still write (``limits.max_evidence_bytes``).

    With a ``ledger`` file, every process of the run draws on one count, kept in that
    file under an exclusive lock; without one, the count is this object's.
    """

    def __init__(self, limit: int, ledger: Path | None = None) -> None:
        self.limit = limit
        self._ledger = ledger if fcntl is not None else None
        self._used = 0
        self._lock = threading.Lock()  # lanes of one process draw on one budget

    def take_many(self, wanted: Sequence[int]) -> list[int]:
        """Grant each of ``wanted`` in turn, up to what is left (one draw on the ledger)."""
        return self._draw(wanted, always=False)

    def count(self, octets: int) -> None:
        """Count ``octets`` that are written whatever is left (metadata files)."""
        self._draw([octets], always=True)

    def _draw(self, wanted: Sequence[int], *, always: bool) -> list[int]:
        if self._ledger is None:
            with self._lock:
                grants, self._used = _grant(wanted, self._used, self.limit, always)
            return grants
        with self._lock:
            fd = os.open(self._ledger, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                used = int(os.pread(fd, 64, 0).strip() or b"0")
                grants, used = _grant(wanted, used, self.limit, always)
                # Overwritten in place at a fixed width: truncating it to zero first would
                # make ext4 flush it to disk on close (auto_da_alloc), at every draw.
                os.pwrite(fd, b"%020d" % used, 0)
            finally:
                os.close(fd)
            return grants

    @property
    def used(self) -> int:
        if self._ledger is None:
            return self._used
        try:
            return int(self._ledger.read_bytes().strip() or b"0")
        except (OSError, ValueError):
            return 0


def _grant(wanted: Sequence[int], used: int, limit: int, always: bool) -> tuple[list[int], int]:
    grants = []
    for octets in wanted:
        granted = octets if always else max(0, min(octets, limit - used))
        used += granted
        grants.append(granted)
    return grants, used


def spill_case(
    case: CaseResult, case_dir: Path, redactor: Redactor, budget: EvidenceBudget | None
) -> None:
    """Write the evidence of a case that just ended, then drop its bodies from memory:
    each becomes a redacted excerpt of ``EXCERPT_BYTES`` with its ``BodyFacts`` (size,
    SHA-256, octets written). The key material the whole bodies held is kept in
    ``case.found_secrets``, so the run's reporters still redact it where a message quotes it.
    """
    found = [
        secret
        for step in case.steps
        for body in step.all_bodies()
        for secret in key_material(body)
    ]
    # Keys the case learnt (a delivered TrK/InK, conformance/protection/uestate.py) are secrets too.
    learnt = found + list(case.secrets)
    red = redactor.extended(learnt) if learnt else redactor
    # Bodies redacted at capture (report.redact.Capture) are written as they are.
    clean = redacted_at_capture(case)
    red = red.with_clean(clean) if clean else red
    write_case_evidence(case, case_dir, red, budget)
    for step in case.steps:
        exchange = step.exchange
        request_excerpt = redacted_prefix(red, exchange.request.body, EXCERPT_BYTES)
        exchange.request = dataclasses.replace(exchange.request, body=request_excerpt)
        exchange.body = redacted_prefix(red, exchange.body, EXCERPT_BYTES)
        if step.plaintext is not None:
            step.plaintext = redacted_prefix(red, step.plaintext, EXCERPT_BYTES)
        kept = {
            "request": exchange.request.body,
            "response": exchange.body,
            "plaintext": step.plaintext or b"",
        }
        step.bodies = {
            kind: dataclasses.replace(facts, kept=len(kept[kind]))
            for kind, facts in step.bodies.items()
        }
    case.found_secrets = found
    case.evidence_dir = case_dir.name
    case.evidence_written = True


def redacted_prefix(redactor: Redactor, data: bytes, limit: int) -> bytes:
    """At most ``limit`` octets of ``data`` redacted; only a window past the cut is read,
    so a 4 MiB body costs a redaction of ``limit`` + the margin."""
    if len(data) <= limit:
        return redactor.bytes(data)
    return redactor.bytes(data[: limit + _REDACTION_MARGIN])[:limit]


def write_case_evidence(
    case: CaseResult, case_dir: Path, redactor: Redactor, budget: EvidenceBudget | None = None
) -> None:
    """Write the evidence files of one case into ``case_dir`` (created); bodies draw on
    ``budget`` and each step's ``bodies`` records what was written.

    ``case_dir`` lies in the run's staging folder, which becomes evidence/ only when the
    session ends, so a file needs no rename of its own to be seen whole: each is written
    once, in place, and the budget is drawn on twice per case (bodies, then metadata)."""
    steps = list(enumerate(case.steps, start=1))
    files = {"request": "request.body", "response": "response.body"}
    files["plaintext"] = "plaintext.xml"
    pending: list[tuple[StepRecord, str, bytes]] = []
    for _, step in steps:
        bodies = {"request": step.exchange.request.body, "response": step.exchange.body}
        if step.plaintext is not None:
            bodies["plaintext"] = step.plaintext
        # A body already written when the case ended keeps only its facts.
        pending += [(step, kind, body) for kind, body in bodies.items() if kind not in step.bodies]
    wanted = [len(body) for _, _, body in pending]
    grants = budget.take_many(wanted) if budget is not None else wanted
    written: dict[tuple[int, str], bytes] = {}
    out: list[tuple[str, bytes]] = []
    for (step, kind, body), granted in zip(pending, grants, strict=True):
        written[(id(step), kind)] = redacted_prefix(redactor, body, granted)
        step.bodies[kind] = BodyFacts(
            size=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            written=granted,
            kept=len(body),
        )
    steps_meta = []
    notes: list[str] = []
    body_paths: set[str] = set()
    for index, step in steps:
        name = step_dir(index, step)
        exchange = step.exchange
        for kind in ("request", "response", "plaintext"):
            if (id(step), kind) in written:
                body_paths.add(f"{name}/{files[kind]}")
                out.append((f"{name}/{files[kind]}", written[(id(step), kind)]))
        for kind, facts in step.bodies.items():
            if facts.cut:
                notes.append(
                    f"{name}/{files[kind]}: {facts.written} of {facts.size} octets written "
                    f"(limits.max_evidence_bytes reached)"
                )
        request = written.get((id(step), "request"))
        out.append(
            (
                f"{name}/request.txt",
                request_text(exchange.request, exchange, redactor, request, step),
            )
        )
        response = written.get((id(step), "response"))
        out.append((f"{name}/response.txt", response_text(exchange, redactor, response, step)))
        steps_meta.append(_step_meta(name, step))
    case.evidence_notes = notes
    meta = {**case_fields(case), "steps": steps_meta}
    if case.controls:  # what the case's control steps ran (conformance/run/control.py)
        meta["controls"] = case.controls
    if notes:
        meta["evidence_notes"] = notes
    out.append(("case.json", to_bytes(redact_tree(meta, redactor))))
    out.append(("repro.sh", repro_script(case, redactor).encode("utf-8")))
    if budget is not None:  # metadata is counted, never cut
        budget.count(sum(len(data) for path, data in out if path not in body_paths))
    _write_files(case_dir, out)


def _write_files(case_dir: Path, out: list[tuple[str, bytes]]) -> None:
    """Create ``case_dir`` and the files ``out`` names (relative paths), each written once."""
    case_dir.mkdir(parents=True, exist_ok=True)
    made = {case_dir}
    for relative, data in out:
        path = case_dir / relative
        if path.parent not in made:
            path.parent.mkdir(exist_ok=True)
            made.add(path.parent)
        mode = 0o755 if relative == "repro.sh" else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def request_text(
    request: RecordedRequest,
    exchange: Exchange,
    redactor: Redactor,
    body: bytes | None = None,
    step: StepRecord | None = None,
) -> bytes:
    """Request line, headers, blank line, body: as sent, redacted. ``body`` is the body as
    already redacted for request.body; a large or cut one is named instead of repeated."""
    version = exchange.http_version or "HTTP/1.1"
    lines = [f"{request.method} {request.url} {version}"]
    lines += [f"{name}: {value}" for name, value in request.headers]
    head = redactor.text("\r\n".join(lines) + "\r\n\r\n")
    shown = _inline_body(
        request.body, body, redactor, step, kind="request", file_name="request.body"
    )
    return head.encode("utf-8", errors="replace") + shown


def response_text(
    exchange: Exchange,
    redactor: Redactor,
    body: bytes | None = None,
    step: StepRecord | None = None,
) -> bytes:
    """Status line, headers, blank line, body; or the transport error when none came."""
    if exchange.status is None:
        kind = f" ({exchange.error_kind})" if exchange.error_kind else ""
        error = exchange.error or "no response recorded"
        return redactor.text(f"# no HTTP response: transport error{kind}: {error}\n").encode(
            "utf-8", errors="replace"
        )
    version = exchange.http_version or "HTTP/1.1"
    lines = [f"{version} {exchange.status} {exchange.reason}".rstrip()]
    lines += [f"{name}: {value}" for name, value in exchange.headers]
    head = redactor.text("\r\n".join(lines) + "\r\n\r\n")
    shown = _inline_body(
        exchange.body, body, redactor, step, kind="response", file_name="response.body"
    )
    return head.encode("utf-8", errors="replace") + shown


def _inline_body(
    raw: bytes,
    redacted: bytes | None,
    redactor: Redactor,
    step: StepRecord | None,
    *,
    kind: str,
    file_name: str,
) -> bytes:
    facts = step.bodies.get(kind) if step is not None else None
    size = facts.size if facts is not None else len(raw)
    if size <= INLINE_BODY_BYTES and (facts is None or not facts.cut):
        return redacted if redacted is not None else redactor.bytes(raw)
    digest = f", sha256 {facts.sha256}" if facts is not None else ""
    return f"[body of {size} octets{digest}: see {file_name}]\n".encode("ascii")


def excerpt_note(step: StepRecord, kind: str) -> str | None:
    """One line saying that only part of a body is shown, and where the rest is."""
    facts = step.bodies.get(kind)
    if facts is None or facts.kept >= facts.size:
        return None
    where = "response.body" if kind == "response" else f"{kind}.body"
    if kind == "plaintext":
        where = "plaintext.xml"
    cut = f"; the evidence file holds {facts.written} (limits.max_evidence_bytes)"
    return (
        f"[an excerpt: the first {facts.kept} of {facts.size} octets, sha256 {facts.sha256}; "
        f"the whole body is in {where}{cut if facts.cut else ''}]"
    )


def repro_script(case: CaseResult, redactor: Redactor) -> str:
    """A bash script with one curl per step of the case.

    Tokens come from the environment (``KMS_TOKEN`` for the valid token, ``KMS_TOKEN_<VARIANT>``
    for the negative ones), the CA file from ``KMS_CA_FILE`` and the target from
    ``KMS_ORIGIN``, so the script runs against the same or another KMS. Bodies are the
    recorded (redacted) ones.
    """
    out = [
        "#!/usr/bin/env bash",
        f"# Repeats the requests of case {_comment(redactor.text(case.id))}: "
        f"{_comment(redactor.text(case.title))}",
        "# Secrets were redacted from the recorded files; this script takes them from the",
        "# environment: KMS_TOKEN (and KMS_TOKEN_<VARIANT> for negative cases), KMS_CA_FILE,",
        "# KMS_ORIGIN (scheme://host:port of the target; default: the recorded one).",
        "# A body that held a secret holds its redaction marker: the KMS will refuse it.",
        "set -eu",
        'cd "$(dirname "$0")"',
    ]
    for index, step in enumerate(case.steps, start=1):
        out.append("")
        out.append(f"echo '== {step_dir(index, step)}' >&2")
        out.extend(_curl_lines(step_dir(index, step), step.exchange.request, redactor))
        out.append("echo")
    return "\n".join(out) + "\n"


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place, so a
    reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _step_meta(name: str, step: StepRecord) -> dict[str, Any]:
    exchange = step.exchange
    request = exchange.request
    tls = exchange.tls
    return {
        "dir": name,
        "label": step.label,
        "method": request.method,
        "url": request.url,
        "token_variant": request.token_variant,
        "body_variant": request.body_variant,
        "status": exchange.status,
        "reason": exchange.reason,
        "http_version": exchange.http_version,
        "elapsed_s": round(exchange.elapsed_s, 4),
        "truncated": exchange.truncated,
        "error": exchange.error,
        "error_kind": exchange.error_kind,
        "tls": None
        if tls is None
        else {
            "version": tls.version,
            "cipher": tls.cipher,
            "peer_subject": tls.peer_subject,
            "peer_issuer": tls.peer_issuer,
            "peer_san": list(tls.peer_san),
            "peer_not_after": tls.peer_not_after,
        },
        "notes": list(exchange.notes),
        # The UE's TrK/InK before and after the step: IDs and fingerprints only.
        "ue_keys": step.ue_keys,
        "plaintext": step.plaintext is not None,
        # Size and SHA-256 of each body as sent or received, and the octets its file holds.
        "bodies": {
            kind: {"size": facts.size, "sha256": facts.sha256, "written": facts.written}
            for kind, facts in step.bodies.items()
        },
        "checks": [check_dict(check) for check in step.checks],
    }


def _curl_lines(name: str, request: RecordedRequest, redactor: Redactor) -> list[str]:
    parts = urlsplit(request.url)
    origin = f"{parts.scheme}://{parts.netloc}"
    rest = request.url[len(origin) :] or "/"
    default = f":-{origin}" if _PLAIN_ORIGIN.fullmatch(origin) else ":?set KMS_ORIGIN"
    args = [
        "curl --silent --show-error --include --max-time 30",
        f"-X {shlex.quote(request.method)}",
    ]
    if parts.scheme == "https":
        args.append('--cacert "${KMS_CA_FILE:-ca.pem}"')
    for header, value in request.headers:
        if header.lower() in _CURL_OWN_HEADERS:
            continue
        if header.lower() == "authorization":
            args.append(_authorization_arg(value, request.token_variant))
            continue
        line = redactor.text(f"{header}: {value}")
        if line != f"{header}: {value}" or is_marker(value.strip()):
            # A secret header value (target file headers = {..., secret}): from the
            # environment, like the token, never the redaction marker.
            var = "KMS_HEADER_" + re.sub(r"[^A-Z0-9]", "_", header.upper())
            args.append(f'-H "{header}: ${{{var}:?set {var}}}"')
            continue
        args.append(f"-H {shlex.quote(line)}")
    if request.body or request.method.upper() not in {"GET", "HEAD"}:
        args.append(f"--data-binary @{shlex.quote(f'{name}/request.body')}")
    args.append(f'"${{KMS_ORIGIN{default}}}"{shlex.quote(redactor.text(rest))}')
    return [" \\\n  ".join(args)]


def _authorization_arg(value: str, token_variant: str) -> str:
    """The -H argument for the Authorization header, the credential from the environment."""
    variant = safe_name(token_variant or "valid").upper().replace(".", "_").replace("-", "_")
    var = "KMS_TOKEN" if variant in {"VALID", "_"} else f"KMS_TOKEN_{variant}"
    scheme, _, _ = value.partition(" ")
    if scheme.lower() == "bearer":
        return f'-H "Authorization: Bearer ${{{var}:?set {var}}}"'
    return f'-H "Authorization: ${{{var}_HEADER:?set {var}_HEADER to the header value}}"'


def _comment(text: str) -> str:
    return " ".join(text.split())
