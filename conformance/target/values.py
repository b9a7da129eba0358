"""The value types and typed readers of a target file (DESIGN.md section 4).

``TargetFileError`` is the one-line problem (file, key, problem) the CLI turns into exit
status 2; ``Secret`` holds a token or key so that no ``repr`` or log line prints it;
``ValueReader`` reads typed values (strings, numbers, files, secrets from the file, the
environment or a command, TrK/InK keys) out of a TOML table, failing with the key's name.
Split from file.py (issue 17), which reads the tables themselves.
"""

from __future__ import annotations

import base64
import binascii
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TargetFileError(ValueError):
    """A target file that cannot be used; ``str()`` is the one-line message for the user."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + problem)


class Secret:
    """A secret value that never shows itself in ``repr``/``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def text(self) -> str:
        return self._value.decode("utf-8")

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SymmetricKey:
    key_id: bytes
    key: Secret

    @property
    def key_id_b64(self) -> str:
        return base64.b64encode(self.key_id).decode("ascii")


class ValueReader:
    """Typed getters over the tables of one target file; every failure names its key."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env

    def fail(self, key: str, problem: str) -> TargetFileError:
        return TargetFileError(self.path, key, problem)

    def table(self, doc: dict[str, Any], name: str, *, required: bool = False) -> dict[str, Any]:
        value = doc.get(name)
        if value is None:
            if required:
                raise self.fail(f"[{name}]", "missing table")
            return {}
        if not isinstance(value, dict):
            raise self.fail(name, "must be a table")
        return value

    def only(self, table: dict[str, Any], where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                name = f"{where}.{key}" if where else key
                raise self.fail(name, f"unknown key (known: {', '.join(sorted(allowed))})")

    def string(
        self, t: dict[str, Any], where: str, key: str, *, required: bool = False
    ) -> str | None:
        value = t.get(key)
        if value is None:
            if required:
                raise self.fail(f"{where}.{key}", "missing required value")
            return None
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"must be a string, not {kind_of(value)}")
        return value

    def boolean(self, t: dict[str, Any], where: str, key: str, default: bool) -> bool:
        value = t.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"must be true or false, not {kind_of(value)}")
        return value

    def number(self, t: dict[str, Any], where: str, key: str, default: float) -> float:
        value = t.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{where}.{key}", f"must be a number, not {kind_of(value)}")
        return float(value)

    def integer(self, t: dict[str, Any], where: str, key: str, default: int) -> int:
        value = t.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where}.{key}", f"must be an integer, not {kind_of(value)}")
        return value

    def existing_file(self, t: dict[str, Any], where: str, key: str) -> Path | None:
        value = self.string(t, where, key)
        if value is None:
            return None
        file = Path(value)
        if not file.is_absolute():
            file = self.path.parent / file
        if not file.is_file():
            raise self.fail(f"{where}.{key}", f"file not found: {file}")
        return file

    def secret_text(self, t: dict[str, Any], where: str, key: str) -> Secret | None:
        raw = self.secret_source(t, where, key)
        return None if raw is None else Secret(raw.strip().encode("utf-8"))

    def secret_source(self, t: dict[str, Any], where: str, key: str) -> str | None:
        given = [k for k in (key, f"{key}_env", f"{key}_command") if k in t]
        if len(given) > 1:
            raise self.fail(f"{where}.{key}", f"give only one of {', '.join(given)}")
        if key in t:
            return self.string(t, where, key)
        if f"{key}_env" in t:
            var = self.string(t, where, f"{key}_env")
            assert var is not None
            if var not in self.env:
                raise self.fail(f"{where}.{key}_env", f"environment variable {var} is not set")
            return self.env[var]
        if f"{key}_command" in t:
            return self.run_command(
                f"{where}.{key}_command", self.string(t, where, f"{key}_command")
            )
        return None

    def run_command(self, key: str, command: str | None) -> str:
        assert command is not None
        try:
            done = subprocess.run(
                command, shell=True, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self.fail(key, f"command failed: {exc}") from None
        if done.returncode != 0:
            raise self.fail(key, f"command exited with status {done.returncode}")
        return done.stdout

    def symmetric_key(self, t: dict[str, Any], where: str, name: str) -> SymmetricKey | None:
        key_id_text = self.string(t, where, f"{name}_id")
        key_hex = self.secret_source(t, where, name)
        if key_id_text is None and key_hex is None:
            return None
        if key_id_text is None or key_hex is None:
            missing = f"{name}_id" if key_id_text is None else name
            raise self.fail(f"{where}.{missing}", f"missing: {name} and {name}_id go together")
        try:
            key_id = base64.b64decode(key_id_text, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(f"{where}.{name}_id", "not valid base64") from None
        if not 1 <= len(key_id) <= 64:
            raise self.fail(f"{where}.{name}_id", "must decode to 1..64 octets")
        try:
            key = bytes.fromhex(key_hex.strip())
        except ValueError:
            raise self.fail(f"{where}.{name}", "not valid hex") from None
        if len(key) not in (16, 24, 32):
            raise self.fail(f"{where}.{name}", f"must be 16, 24 or 32 octets, not {len(key)}")
        return SymmetricKey(key_id, Secret(key))


def kind_of(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
