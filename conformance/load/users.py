"""Many users in one target file: ``[user_pattern]`` (DESIGN.md 4, issue 16).

A load run plays thousands of UEs, each with its own identity and token, which no one
writes as ``[[users]]`` entries. The pattern names them by index::

    [user_pattern]
    uri = "sip:ue{index}@example.org"   # {index} runs over first .. first+count-1
    count = 1000
    first = 1                            # default 1
    # the token (and keys) of UE {index}, exactly one of:
    token_template = "token-for-{index}" # a literal with {index}
    token_command = "mint-token {index}" # a shell command; stdout: the token, or a JSON
                                         # object with token and optional trk_id/trk/ink_id/ink
    users_file = "load-users.jsonl"      # one JSON object per line: index, token, keys

The keys (trk_id base64, trk hex, ink_id, ink) let the checks verify the protection of
each UE's answers; without them those checks are skipped with the reason. Relative paths
are relative to the target file. ``[[users]]`` stays required: the first user still makes
the one KMS Initialize a checker needs for the KMS certificate.
"""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.target.file import Secret, SymmetricKey, User

TOKEN_SOURCES = ("token_template", "token_command", "users_file")
_KEYS = {"uri", "count", "first", *TOKEN_SOURCES}
COMMAND_TIMEOUT_S = 30


class UserPatternError(ValueError):
    """``key: problem`` for the target file's error message."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class UserPattern:
    uri: str
    count: int
    first: int
    source: str  # one of TOKEN_SOURCES
    value: str  # the template, the command or the file path
    base: Path  # the target file's folder

    @property
    def indices(self) -> range:
        return range(self.first, self.first + self.count)

    def uri_of(self, index: int) -> str:
        return self.uri.replace("{index}", str(index))


def parse_user_pattern(raw: Any, base: Path) -> UserPattern:
    """Check a ``[user_pattern]`` table; ``UserPatternError`` names the key at fault."""
    where = "user_pattern"
    if not isinstance(raw, Mapping):
        raise UserPatternError(where, "must be a table")
    for key in raw:
        if key not in _KEYS:
            raise UserPatternError(
                f"{where}.{key}", f"unknown key (known: {', '.join(sorted(_KEYS))})"
            )
    uri = raw.get("uri")
    if not isinstance(uri, str) or "{index}" not in uri:
        raise UserPatternError(f"{where}.uri", "must be a string containing {index}")
    count = raw.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserPatternError(f"{where}.count", "must be a positive integer")
    first = raw.get("first", 1)
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise UserPatternError(f"{where}.first", "must be a non-negative integer")
    given = [k for k in TOKEN_SOURCES if k in raw]
    if len(given) != 1:
        raise UserPatternError(where, f"give exactly one of {', '.join(TOKEN_SOURCES)}")
    value = raw[given[0]]
    if not isinstance(value, str) or not value:
        raise UserPatternError(f"{where}.{given[0]}", "must be a non-empty string")
    if given[0] == "users_file":
        file = Path(value) if Path(value).is_absolute() else base / value
        if not file.is_file():
            raise UserPatternError(f"{where}.users_file", f"file not found: {file}")
    return UserPattern(uri, count, first, given[0], value, base)


class PatternUsers:
    """The ``User`` of each index, resolved on first use (a command runs once per UE)."""

    def __init__(self, pattern: UserPattern, run: Callable[[str], str] | None = None) -> None:
        self.pattern = pattern
        self._run = run or _run_command
        self._cache: dict[int, User] = {}
        self._file: dict[int, Mapping[str, Any]] | None = None

    def user(self, index: int) -> User:
        if index not in self.pattern.indices:
            raise UserPatternError("user_pattern", f"index {index} is outside first..first+count-1")
        found = self._cache.get(index)
        if found is None:
            found = self._resolve(index)
            self._cache[index] = found
        return found

    def _resolve(self, index: int) -> User:
        pattern = self.pattern
        uri = pattern.uri_of(index)
        if pattern.source == "token_template":
            return User(uri, Secret(pattern.value.replace("{index}", str(index)).encode()))
        if pattern.source == "token_command":
            key = "user_pattern.token_command"
            out = self._run(pattern.value.replace("{index}", str(index))).strip()
            if out.startswith("{"):
                try:
                    entry = json.loads(out)
                except json.JSONDecodeError:
                    raise UserPatternError(key, f"UE {index}: the output is not JSON") from None
                return _user_from_entry(uri, entry, f"{key} (UE {index})")
            if not out:
                raise UserPatternError(key, f"UE {index}: the command printed no token")
            return User(uri, Secret(out.encode()))
        entries = self._users_file()
        entry = entries.get(index)
        if entry is None:
            raise UserPatternError("user_pattern.users_file", f"holds no entry for index {index}")
        return _user_from_entry(uri, entry, f"user_pattern.users_file (index {index})")

    def _users_file(self) -> dict[int, Mapping[str, Any]]:
        if self._file is None:
            value = Path(self.pattern.value)
            path = value if value.is_absolute() else self.pattern.base / value
            key = "user_pattern.users_file"
            entries: dict[int, Mapping[str, Any]] = {}
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise UserPatternError(key, f"cannot read {path} ({type(exc).__name__})") from None
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    raise UserPatternError(key, f"{path}:{number}: not a JSON object") from None
                index = entry.get("index") if isinstance(entry, dict) else None
                if isinstance(index, bool) or not isinstance(index, int):
                    raise UserPatternError(key, f"{path}:{number}: no integer index")
                entries[index] = entry
            self._file = entries
        return self._file


def _user_from_entry(uri: str, entry: Any, where: str) -> User:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("token"), str):
        raise UserPatternError(where, "an entry needs a token string")
    return User(
        uri,
        Secret(str(entry["token"]).strip().encode()),
        trk=_key(entry, "trk", where),
        ink=_key(entry, "ink", where),
    )


def _key(entry: Mapping[str, Any], name: str, where: str) -> SymmetricKey | None:
    key_id, key = entry.get(f"{name}_id"), entry.get(name)
    if key_id is None and key is None:
        return None
    if not isinstance(key_id, str) or not isinstance(key, str):
        raise UserPatternError(where, f"{name} and {name}_id go together, as strings")
    try:
        return SymmetricKey(base64.b64decode(key_id, validate=True), Secret(bytes.fromhex(key)))
    except (binascii.Error, ValueError):
        raise UserPatternError(where, f"{name}_id is not base64 or {name} is not hex") from None


def _run_command(command: str) -> str:
    key = "user_pattern.token_command"
    try:
        done = subprocess.run(
            command,
            shell=True,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserPatternError(key, f"command failed: {type(exc).__name__}") from None
    if done.returncode != 0:
        raise UserPatternError(key, f"command exited with status {done.returncode}")
    return done.stdout
