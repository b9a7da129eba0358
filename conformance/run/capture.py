"""Captured exchanges for ``kms-conformance check``: files, evidence folders and HAR files.

A capture is one response body and, as far as the capture says, the request that drew it:
the HTTP method and URL (whose path names the request type, the requested URI, the NTP
time and the certcache number) and the HTTP status. Sources:

* a response file (the body only; the rest comes from ``--status`` / ``--url``);
* a folder of request/response files: the step folders of this harness's own evidence
  (``evidence/<case-id>/NN-<label>/`` with ``request.txt``, ``response.txt``,
  ``response.body``; see conformance/report/evidence.py), a case folder holding such step
  folders (each step is one capture), or any folder with ``response.body`` /
  ``response.xml`` / ``response.txt`` and optionally ``request.txt``;
* a HAR 1.2 file (``*.har``): each entry is one capture.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

# Path forms of Annex D (spec digest section 2): subdirectory -> how many segments may follow.
_ARITY = {
    "init": (0,),
    "keyprov": (0, 1, 2),
    "certcache": (0, 1),
    "cert": (1,),
    "lookup": (1,),
    "redirect": (0,),
}
NTP_SEGMENT = re.compile(r"^[0-9A-Fa-f]{16}$")
_STATUS_LINE = re.compile(r"^HTTP/[0-9.]+\s+([0-9]{3})")
_REQUEST_LINE = re.compile(r"^([A-Z]+)\s+(\S+)")
_RESPONSE_BODIES = ("response.body", "response.xml")
_MAX_CAPTURE_BYTES = 16 * 1024 * 1024


class CaptureError(ValueError):
    """A capture cannot be read; the message is one line naming the file."""


@dataclass(frozen=True)
class RequestFacts:
    """What a request URL says: request type, requested URI, time and cache number."""

    request_type: str | None = None
    path: str | None = None
    requested_uri: str | None = None
    requested_ntp: int | None = None  # NTP seconds (the upper 32 bits of the timestamp)
    cache_num: int | None = None

    def describe(self) -> str:
        parts = []
        if self.requested_uri is not None:
            parts.append(f"for {self.requested_uri}")
        if self.requested_ntp is not None:
            parts.append(f"at NTP second {self.requested_ntp}")
        if self.cache_num is not None:
            parts.append(f"cache number {self.cache_num}")
        return ", ".join(parts)


def request_facts(url: str, source: str = "--url", *, strict: bool = True) -> RequestFacts:
    """Read the request type and its path segments from a request URL or path.

    The rightmost Annex D subdirectory whose following segments fit its form wins, so a
    base path of any depth works (``/keymanagement/identity/v1/keyprov/<uri>/<time>``).
    A URL naming no KMS request is an error when the user gave it (``strict``); from a
    capture (an unknown path drawing a 404) it only leaves the request type open.
    """
    path = urlsplit(url.strip()).path if "://" in url else url.strip().split("?", 1)[0]
    raw = [s for s in path.split("/") if s]
    segments = [unquote(s) for s in raw]
    for index in range(len(segments) - 1, -1, -1):
        name = segments[index]
        after = segments[index + 1 :]
        if name not in _ARITY or len(after) not in _ARITY[name]:
            continue
        facts: dict[str, Any] = {"request_type": name, "path": path}
        if name == "keyprov" and after:
            facts["requested_uri"] = after[0]
            if len(after) == 2:
                if not NTP_SEGMENT.match(after[1]):
                    raise CaptureError(
                        f"{source}: keyprov time segment {after[1]!r} is not a 64-bit NTP "
                        "timestamp in hex (16 digits)"
                    )
                facts["requested_ntp"] = int(after[1], 16) >> 32
        elif name == "certcache" and after:
            if not after[0].isdigit():
                raise CaptureError(f"{source}: certcache number {after[0]!r} is not an integer")
            facts["cache_num"] = int(after[0])
        elif name in ("cert", "lookup"):
            facts["requested_uri"] = after[0]
        return RequestFacts(**facts)
    if not strict:
        return RequestFacts(path=path)
    known = ", ".join(_ARITY)
    raise CaptureError(f"{source} {url!r}: names none of the KMS requests ({known})")


@dataclass(frozen=True)
class Capture:
    """One captured response and what is known of its request."""

    name: str
    body: bytes
    status: int | None = None
    method: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def read_captures(path: Path) -> list[Capture]:
    """Every capture ``path`` holds (a file, a folder, a HAR file); ``CaptureError`` if none."""
    if path.is_dir():
        return _folder(path)
    if path.suffix.lower() == ".har":
        return _har(path)
    return [Capture(str(path), _read_bytes(path))]


# -- folders -----------------------------------------------------------------------------


def _folder(folder: Path) -> list[Capture]:
    if _is_step(folder):
        return [_step(folder)]
    steps = sorted(p for p in folder.iterdir() if p.is_dir() and _is_step(p))
    if not steps:
        raise CaptureError(
            f"{folder}: holds no response.body, response.xml or response.txt "
            "(nor step folders that do)"
        )
    return [_step(step) for step in steps]


def _is_step(folder: Path) -> bool:
    names = ("response.txt", *_RESPONSE_BODIES)
    return any((folder / name).is_file() for name in names)


def _step(folder: Path) -> Capture:
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    response_txt = folder / "response.txt"
    if response_txt.is_file():
        head, embedded = _split_message(_read_bytes(response_txt))
        if head and head[0].startswith("# no HTTP response"):
            raise CaptureError(f"{response_txt}: {head[0].lstrip('# ')}")
        match = _STATUS_LINE.match(head[0]) if head else None
        if match is None:
            raise CaptureError(f"{response_txt}: first line is not an HTTP status line")
        status = int(match.group(1))
        headers = _header_pairs(head[1:])
        body = embedded
    for name in _RESPONSE_BODIES:
        if (folder / name).is_file():
            body = _read_bytes(folder / name)
            break
    method = url = None
    request_txt = folder / "request.txt"
    if request_txt.is_file():
        head, _body = _split_message(_read_bytes(request_txt))
        match = _REQUEST_LINE.match(head[0]) if head else None
        if match is None:
            raise CaptureError(f"{request_txt}: first line is not an HTTP request line")
        method, url = match.group(1), match.group(2)
    return Capture(str(folder), body or b"", status, method, url, headers)


def _split_message(data: bytes) -> tuple[list[str], bytes]:
    """Start line and header lines (decoded), and the body after the first blank line."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = data.partition(separator)
        if found:
            break
    else:
        head, body = data, b""
    lines = head.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    return [ln for ln in lines if ln.strip()], body


def _header_pairs(lines: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


# -- HAR 1.2 -----------------------------------------------------------------------------


def _har(path: Path) -> list[Capture]:
    try:
        document = json.loads(_read_bytes(path))
        entries = document["log"]["entries"]
        if not isinstance(entries, list):
            raise TypeError("log.entries is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise CaptureError(f"{path}: not a HAR 1.2 file ({exc})") from None
    captures = []
    for index, entry in enumerate(entries):
        try:
            captures.append(_har_entry(path, index, entry))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise CaptureError(f"{path}: entry {index} is not a HAR entry ({exc})") from None
    if not captures:
        raise CaptureError(f"{path}: the HAR file holds no entries")
    return captures


def _har_entry(path: Path, index: int, entry: dict[str, Any]) -> Capture:
    request = entry["request"]
    response = entry["response"]
    content = response.get("content") or {}
    text = content.get("text") or ""
    if content.get("encoding") == "base64":
        body = base64.b64decode(text, validate=True)
    else:
        body = str(text).encode("utf-8")
    status = int(response["status"])
    headers = tuple((str(h["name"]), str(h["value"])) for h in response.get("headers", []))
    method, url = str(request["method"]), str(request["url"])
    name = f"{path}#{index} ({method} {urlsplit(url).path})"
    # HAR writes status 0 for a request that got no response.
    return Capture(name, body, status or None, method, url, headers)


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > _MAX_CAPTURE_BYTES:
            raise CaptureError(f"{path}: {size} bytes is more than a capture may hold")
        return path.read_bytes()
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read ({exc.strerror})") from None
