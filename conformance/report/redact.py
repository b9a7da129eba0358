"""Redaction of secrets before anything is written (DESIGN.md section 6).

Two layers. At capture (``Capture.case``, called by the engine when a case has finished
and its checks no longer need the raw exchanges) every step is redacted where the secrets
are known to be: the credential of the ``Authorization`` header, the text of the private
key elements of what the KMS sent (structurally, token by XML token, so the bytes around
them stay as received) and the run's own secrets should a KMS echo them. The step is then
marked ``redacted`` and the reporters write its bodies as they are.

Every other string a reporter writes (check messages, headers, ids) still passes through
one ``Redactor``, and so does any step not redacted at capture. It replaces

* each known secret (bearer tokens, TrK, InK, ...) in its raw, hex (lower or upper case),
  base64 and base64url (padded or not) forms;
* the credentials of any ``Authorization`` header, known or not;
* the text content of private key elements in XML (``UserDecryptKey`` = RSK,
  ``UserSigningKeySSK`` = SSK, ``NewTransportKey``/``NewIntegrityKey`` and anything inside
  them), because the KMS generates that material and the harness may not know it;

by ``REDACTED-LABEL-sha256-XXXXXXXX``, the first 8 hex digits of the SHA-256 of the raw
value, so two reports can still be compared. The marker is valid XML text content and a
valid header value: an evidence body stays well-formed and ``kms-conformance check``
re-reads it (and skips, with the reason, the checks of the redacted key material). Public
key material (``PubEncKey``, ``PubAuthKey``, ``UserPubTokenPVT``) stays. Each rule is one
pass over the input.

A base64 secret that begins at an offset not a multiple of 3 inside a longer base64 blob
has no fixed text form and is not found here; the key-element rule covers key material.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import replace

from conformance.core.exchange import Exchange
from conformance.verdicts.outcomes import CheckResult
from conformance.verdicts.results import CaseResult, SecretValue

__all__ = [
    "MARKER_PREFIX",
    "Capture",
    "Redactor",
    "fingerprint",
    "holds_marker",
    "is_marker",
    "key_material",
    "marker",
]

MARKER_PREFIX = "REDACTED-"
_MARKER = re.compile(r"REDACTED-[A-Z0-9_-]+-sha256-[0-9a-f]{8}")
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})

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
            if not is_marker(text.strip()):
                found.append(SecretValue(label, _decode_key_text(text.strip())))
            return text

        _map_key_texts(s, collect)
    return found


def fingerprint(raw: bytes) -> str:
    """The short fingerprint a marker shows: first 8 hex digits of SHA-256."""
    return hashlib.sha256(raw).hexdigest()[:8]


def marker(label: str, raw: bytes) -> str:
    """``REDACTED-<LABEL>-sha256-<fingerprint>``: no ``<``, ``&`` or space, so it is valid
    as XML text content, a header value and one shell word."""
    safe = re.sub(r"[^A-Z0-9_-]", "_", label.upper()) or "SECRET"
    return f"{MARKER_PREFIX}{safe}-sha256-{fingerprint(raw)}"


def holds_marker(data: bytes) -> bool:
    """Whether ``data`` holds a redaction marker anywhere (a body that held a secret)."""
    return _MARKER.search(data.decode("latin-1")) is not None


def is_marker(text: str) -> bool:
    """Whether ``text`` is one redaction marker (and nothing else)."""
    return _MARKER.fullmatch(text) is not None


_ANCHOR = 4  # no form is shorter: secrets have at least MIN_SECRET_LEN (4) octets
_SHORT = 2048  # longer strings (bodies) take one str.replace pass per form instead
_MEMO_ENTRIES = 100_000


class Redactor:
    """Replaces secrets and private key material in text and bytes by markers."""

    def __init__(self, secrets: Iterable[SecretValue], clean: Iterable[bytes] = ()) -> None:
        self.secrets = tuple(secrets)
        # Bodies redacted at capture (``Capture``): written as they are, not scanned again.
        self._clean = frozenset(clean)
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
        return self._known(s, replacements)

    def known(self, s: str) -> str:
        """``s`` with the known secrets and Authorization credentials replaced (not the key
        elements: for text whose key elements were redacted already)."""
        return self._known(s, self._replacements if len(s) > _SHORT else self._candidates(s))

    def _known(self, s: str, replacements: list[tuple[str, str]]) -> str:
        for form, mark in replacements:  # str.replace: one fast linear pass per form
            s = s.replace(form, mark)
        # The case-insensitive regex is slow on megabytes; a plain search finds most bodies
        # have no Authorization at all.
        if "authorization" in s.lower():
            s = _AUTHORIZATION.sub(_replace_credentials, s)
        return s

    def bytes(self, data: bytes) -> bytes:
        """The same for bytes: works on the bytes one to one (latin-1), any encoding."""
        if not data or data in self._clean:
            return data
        return self.text(data.decode("latin-1")).encode("latin-1", errors="replace")

    def extended(self, more: Iterable[SecretValue]) -> Redactor:
        """A redactor for these secrets and ``more`` (e.g. key material found in bodies)."""
        return Redactor([*self.secrets, *more], self._clean)

    def with_clean(self, bodies: Iterable[builtins.bytes]) -> Redactor:
        """The same secrets, with ``bodies`` (redacted at capture) passed through as is."""
        other = Redactor.__new__(Redactor)
        other.__dict__.update(self.__dict__)
        other._clean = self._clean | frozenset(bodies)
        return other


def redacted_at_capture(case: CaseResult) -> list[bytes]:
    """The bodies of ``case`` that ``Capture`` already redacted: reporters write them as
    they are (``Redactor.with_clean``)."""
    return [body for step in case.steps if step.redacted for body in step.all_bodies()]


class Capture:
    """Redaction at capture: one per run (its secrets), applied to each finished case."""

    def __init__(self, secrets: Iterable[SecretValue]) -> None:
        self.redactor = Redactor(secrets)
        self._labels = {bytes(s.value): s.label for s in self.redactor.secrets}

    def case(self, case: CaseResult) -> None:
        """Redact ``case`` in place: its steps get redacted copies of their exchanges (the
        probe may still hold the originals), its checks redacted texts."""
        found: list[SecretValue] = []
        for step in case.steps:
            step.exchange = self._exchange(step.exchange, found)
            if step.plaintext is not None:
                step.plaintext = self._received(step.plaintext, found)
            step.redacted = True
        # A check message may quote the key material of this case or a secret of the run.
        red = self.redactor.extended(found) if found else self.redactor
        done: dict[int, CheckResult] = {}

        def checked(check: CheckResult) -> CheckResult:
            key = id(check)
            if key not in done:
                done[key] = _redacted_check(check, red)
            return done[key]

        case.checks = [checked(c) for c in case.checks]
        for step in case.steps:
            step.checks = [checked(c) for c in step.checks]
        case.reason = red.text(case.reason)

    def _exchange(self, exchange: Exchange, found: list[SecretValue]) -> Exchange:
        request = exchange.request
        text = self.redactor.text
        # Other request headers may carry a secret of the target file too (an identity or
        # API-key header whose value comes from the environment: conformance/target/auth.py).
        headers = tuple(
            (name, self._credential(value) if name.lower() in _CREDENTIAL_HEADERS else text(value))
            for name, value in request.headers
        )
        # The harness builds the request body from the catalogue and puts no secret in it;
        # the known-secret pass is a safety net, as cheap as it is (C-level str.replace).
        body = request.body
        if body:
            body = self.redactor.known(body.decode("latin-1")).encode("latin-1", "replace")
        return replace(
            exchange,
            request=replace(request, headers=headers, body=body),
            headers=tuple((name, text(value)) for name, value in exchange.headers),
            body=self._received(exchange.body, found),
            error=None if exchange.error is None else text(exchange.error),
            notes=[text(note) for note in exchange.notes],
        )

    def _credential(self, value: str) -> str:
        scheme, space, credential = value.strip().partition(" ")
        if not space:
            scheme, credential = "", scheme
        credential = credential.strip()
        if not credential or is_marker(credential):
            return value
        raw = credential.encode("utf-8", errors="surrogateescape")
        mark = marker(self._labels.get(raw, "token"), raw)
        return f"{scheme} {mark}" if scheme else mark

    def _received(self, data: bytes, found: list[SecretValue]) -> bytes:
        """What the KMS sent, with private key element texts replaced and any secret of the
        run it echoed."""
        if not data:
            return data
        s = data.decode("latin-1")
        if _has_key_element(s):

            def mask(text: str, label: str) -> str:
                stripped = text.strip()
                if not is_marker(stripped):
                    found.append(SecretValue(label, _decode_key_text(stripped)))
                return _mask_key_text(text, label)

            s = _map_key_texts(s, mask)
        return self.redactor.known(s).encode("latin-1", errors="replace")


def _redacted_check(check: CheckResult, red: Redactor) -> CheckResult:
    return replace(
        check,
        message=red.text(check.message),
        expected=red.text(check.expected),
        observed=red.text(check.observed),
        details={
            red.text(k): red.text(v) if isinstance(v, str) else v for k, v in check.details.items()
        },
    )


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
    if cred.startswith(MARKER_PREFIX):
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
    if is_marker(stripped):
        return text
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
