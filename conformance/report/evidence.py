"""Evidence files: every exchange of a case, as sent and received, redacted (DESIGN.md 6).

``evidence/<case-id>/`` holds, per step ``NN-<label>/``: ``request.txt`` (request line,
headers, blank line, body), ``request.body``, ``response.txt`` (status line, headers, body;
or the transport error), ``response.body`` and, when the KmsMessage was decrypted,
``plaintext.xml``. Beside them: ``case.json`` (verdict, checks, what each step sent) and
``repro.sh``, one curl per step that repeats the case with secrets taken from the
environment (``KMS_TOKEN``...) instead of the redacted values.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conformance.exchange import Exchange, RecordedRequest
from conformance.report.redact import Redactor
from conformance.report.results_json import case_fields, check_dict, redact_tree, to_bytes
from conformance.results import CaseResult, StepRecord

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


def write_case_evidence(case: CaseResult, case_dir: Path, redactor: Redactor) -> None:
    """Write the evidence files of one case into ``case_dir`` (created)."""
    case_dir.mkdir(parents=True, exist_ok=True)
    steps_meta = []
    for index, step in enumerate(case.steps, start=1):
        name = step_dir(index, step)
        directory = case_dir / name
        directory.mkdir(exist_ok=True)
        exchange = step.exchange
        atomic_write(directory / "request.txt", request_text(exchange.request, exchange, redactor))
        atomic_write(directory / "request.body", redactor.bytes(exchange.request.body))
        atomic_write(directory / "response.txt", response_text(exchange, redactor))
        atomic_write(directory / "response.body", redactor.bytes(exchange.body))
        if step.plaintext is not None:
            atomic_write(directory / "plaintext.xml", redactor.bytes(step.plaintext))
        steps_meta.append(_step_meta(name, step))
    meta = {**case_fields(case), "steps": steps_meta}
    atomic_write(case_dir / "case.json", to_bytes(redact_tree(meta, redactor)))
    atomic_write(case_dir / "repro.sh", repro_script(case, redactor).encode("utf-8"), mode=0o755)


def request_text(request: RecordedRequest, exchange: Exchange, redactor: Redactor) -> bytes:
    """Request line, headers, blank line, body: as sent, redacted."""
    version = exchange.http_version or "HTTP/1.1"
    lines = [f"{request.method} {request.url} {version}"]
    lines += [f"{name}: {value}" for name, value in request.headers]
    head = redactor.text("\r\n".join(lines) + "\r\n\r\n")
    return head.encode("utf-8", errors="replace") + redactor.bytes(request.body)


def response_text(exchange: Exchange, redactor: Redactor) -> bytes:
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
    return head.encode("utf-8", errors="replace") + redactor.bytes(exchange.body)


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
        args.append(f"-H {shlex.quote(redactor.text(f'{header}: {value}'))}")
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
