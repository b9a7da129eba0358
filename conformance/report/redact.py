"""Redaction of secrets before anything is written (DESIGN.md section 6).

Every string and byte string a reporter writes passes through one ``Redactor``. It replaces

* each known secret (bearer tokens, TrK, InK, ...) in its raw, hex (lower or upper case),
  base64 and base64url (padded or not) forms;
* the credentials of any ``Authorization`` header, known or not;
* the text content of private key elements in XML (``UserDecryptKey`` = RSK,
  ``UserSigningKeySSK`` = SSK, ``NewTransportKey``/``NewIntegrityKey`` and anything inside
  them), because the KMS generates that material and the harness may not know it;

by ``<redacted LABEL sha256:XXXXXXXX>``, the first 8 hex digits of the SHA-256 of the raw
value, so two reports can still be compared. Public key material (``PubEncKey``,
``PubAuthKey``, ``UserPubTokenPVT``) stays. Each rule is one pass over the input.

A base64 secret that begins at an offset not a multiple of 3 inside a longer base64 blob
has no fixed text form and is not found here; the key-element rule covers key material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
from collections.abc import Callable, Iterable

from conformance.results import SecretValue

__all__ = ["Redactor", "fingerprint", "key_material", "marker"]

# Shorter values would match unrelated text all over a report.
MIN_SECRET_LEN = 4

_KEY_ELEMENTS = {
    "UserDecryptKey": "rsk",
    "UserSigningKeySSK": "ssk",
    "NewTransportKey": "trk",
    "NewIntegrityKey": "ink",
}
# Inside a key element these carry the (public) ID of a key, not key material.
_KEY_ID_ELEMENTS = frozenset({"KeyName", "CarriedKeyName"})

# One token per XML construct; an unterminated CDATA, comment or tag runs to the end, so
# hostile input cannot make a token rescan the rest of the body (linear time).
# Lazy single-character repeats (not repeated groups): re keeps no state per character,
# so a 4 MiB comment costs 4 MiB, not the 500 MB a repeated group's backtracking stack took.
_XML_TOKEN = re.compile(
    r"<!\[CDATA\[(?P<cdata>(?s:.*?))(?:\]\]>|\Z)"
    r"|<!--(?s:.*?)(?:-->|\Z)"
    r"|<(?P<close>/)?(?P<name>[^\s<>/!?]*)[^<>]*?(?P<empty>/)?>"
    r"|<[^<>]*"
    r"|(?P<text>[^<]+)"
)
# A header line names any scheme (or none); elsewhere (JSON, a repr) the scheme must follow,
# so prose that merely mentions authorization keeps its words.
_AUTHORIZATION = re.compile(
    r"(?P<head>^[ \t]*(?:proxy-)?authorization[ \t]*:[ \t]*)"
    r"(?:(?P<scheme>bearer|basic|digest|token)[ \t]+)?(?P<cred>[^\s\"',;]+)"
    r"|(?P<head2>(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?\s*)"
    r"(?P<scheme2>bearer|basic)\s+(?P<cred2>[^\s\"',;]+)",
    re.IGNORECASE | re.MULTILINE,
)
_HEX_TEXT = re.compile(r"[0-9A-Fa-f\s]+")


def key_material(data: bytes | str) -> list[SecretValue]:
    """The private key material written in the key elements of an XML body, as secrets.

    Reporters add these to the run's secrets, so an RSK or SSK that a check message quotes
    outside any XML is redacted too.
    """
    s = data.decode("latin-1") if isinstance(data, bytes) else data
    found: list[SecretValue] = []
    if _has_key_element(s):

        def collect(text: str, label: str) -> str:
            found.append(SecretValue(label, _decode_key_text(text.strip())))
            return text

        _map_key_texts(s, collect)
    return found


def fingerprint(raw: bytes) -> str:
    """The short fingerprint a marker shows: first 8 hex digits of SHA-256."""
    return hashlib.sha256(raw).hexdigest()[:8]


def marker(label: str, raw: bytes) -> str:
    return f"<redacted {label} sha256:{fingerprint(raw)}>"


_ANCHOR = 4  # no form is shorter: secrets have at least MIN_SECRET_LEN (4) octets
_SHORT = 2048  # longer strings (bodies) take one str.replace pass per form instead
_MEMO_ENTRIES = 100_000


class Redactor:
    """Replaces secrets and private key material in text and bytes by markers."""

    def __init__(self, secrets: Iterable[SecretValue]) -> None:
        self.secrets = tuple(secrets)
        forms: dict[str, str] = {}
        for secret in self.secrets:
            raw = bytes(secret.value)
            if len(raw) < MIN_SECRET_LEN:
                continue
            mark = marker(secret.label, raw)
            for form in _text_forms(raw):
                forms.setdefault(form, mark)
        # Longest first: a padded base64 form goes before its unpadded prefix, and a secret
        # that contains another is replaced whole.
        self._replacements = sorted(forms.items(), key=lambda item: len(item[0]), reverse=True)
        # Every form starts with one of these short anchors; a short string is searched for
        # the anchors once instead of for every form (a run quotes thousands of short
        # messages and holds hundreds of forms: key material of every key set it saw).
        self._anchors: dict[str, set[str]] = {}
        for form, _mark in self._replacements:
            self._anchors.setdefault(form[:_ANCHOR], set()).add(form)
        self._memo: dict[str, str] = {}

    def text(self, s: str) -> str:
        """``s`` with every secret, Authorization credential and key element replaced."""
        if len(s) > _SHORT:
            return self._text(s, self._replacements)
        done = self._memo.get(s)
        if done is None:
            done = self._text(s, self._candidates(s))
            if len(self._memo) < _MEMO_ENTRIES:
                self._memo[s] = done
        return done

    def _candidates(self, s: str) -> list[tuple[str, str]]:
        anchors = self._anchors
        hits: set[str] = set()
        for start in range(len(s) - _ANCHOR + 1):
            forms = anchors.get(s[start : start + _ANCHOR])
            if forms:
                hits |= forms
        return [item for item in self._replacements if item[0] in hits] if hits else []

    def _text(self, s: str, replacements: list[tuple[str, str]]) -> str:
        if _has_key_element(s):
            s = _redact_key_elements(s)
        for form, mark in replacements:  # str.replace: one fast linear pass per form
            s = s.replace(form, mark)
        # The case-insensitive regex is slow on megabytes; a plain search finds most bodies
        # have no Authorization at all.
        if "authorization" in s.lower():
            s = _AUTHORIZATION.sub(_replace_credentials, s)
        return s

    def bytes(self, data: bytes) -> bytes:
        """The same for bytes: works on the bytes one to one (latin-1), any encoding."""
        return self.text(data.decode("latin-1")).encode("latin-1", errors="replace")

    def extended(self, more: Iterable[SecretValue]) -> Redactor:
        """A redactor for these secrets and ``more`` (e.g. key material found in bodies)."""
        return Redactor([*self.secrets, *more])


def _text_forms(raw: bytes) -> list[str]:
    """Every fixed text form of ``raw``: latin-1 and UTF-8 text, hex, base64, base64url."""
    forms = [raw.decode("latin-1"), raw.hex(), raw.hex().upper()]
    with contextlib.suppress(UnicodeDecodeError):
        forms.append(raw.decode("utf-8"))
    std = base64.b64encode(raw).decode("ascii")
    url = base64.urlsafe_b64encode(raw).decode("ascii")
    forms += [std, std.rstrip("="), url, url.rstrip("=")]
    return forms


def _replace_credentials(match: re.Match[str]) -> str:
    if match.group("head") is not None:
        head, scheme, cred = match.group("head", "scheme", "cred")
    else:
        head, scheme, cred = match.group("head2", "scheme2", "cred2")
    if cred.startswith("<redacted"):
        return match.group(0)
    prefix = head + (f"{scheme} " if scheme else "")
    return prefix + marker("token", cred.encode("utf-8", errors="surrogateescape"))


def _has_key_element(s: str) -> bool:
    return any(name in s for name in _KEY_ELEMENTS)


def _redact_key_elements(s: str) -> str:
    """Replace the text inside private key elements, keeping the markup around it."""
    return _map_key_texts(s, _mask_key_text)


def _map_key_texts(s: str, replace: Callable[[str, str], str]) -> str:
    """``s`` with each non-blank text inside a key element passed through ``replace``."""
    out: list[str] = []
    depth = 0
    label = ""
    last_open = ""
    for token in _XML_TOKEN.finditer(s):
        name = token.group("name")
        text = token.group("text")
        cdata = token.group("cdata")
        whole = token.group(0)
        if name is not None:
            local = name.rsplit(":", 1)[-1]
            closing = token.group("close") is not None
            if local in _KEY_ELEMENTS and token.group("empty") is None:
                if closing:
                    depth = max(depth - 1, 0)
                else:
                    if depth == 0:
                        label = _KEY_ELEMENTS[local]
                    depth += 1
            last_open = "" if closing else local
            out.append(whole)
        elif depth and text is not None and text.strip() and last_open not in _KEY_ID_ELEMENTS:
            out.append(replace(text, label))
        elif depth and cdata is not None and cdata.strip():
            out.append(whole.replace(cdata, replace(cdata, label), 1))
        else:
            out.append(whole)
    return "".join(out)


def _mask_key_text(text: str, label: str) -> str:
    stripped = text.strip()
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    return f"{lead}{marker(label, _decode_key_text(stripped))}{trail}"


def _decode_key_text(text: str) -> bytes:
    """The raw key a hex or base64 text stands for, so the fingerprint matches the secret's."""
    compact = "".join(text.split())
    if _HEX_TEXT.fullmatch(compact) and len(compact) % 2 == 0:
        return bytes.fromhex(compact)
    padded = compact.rstrip("=") + "=" * (-len(compact.rstrip("=")) % 4)
    altchars = b"-_" if ("-" in compact or "_" in compact) else None
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return compact.encode("utf-8", errors="surrogateescape")
