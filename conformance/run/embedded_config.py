"""The configuration ``run --embedded-fault NAME`` starts the reference KMS with.

A fault acts in one protection mode only (an encryption fault needs an encrypted
KmsMessage): the fault catalogue says which (``embedded_config`` in
``python -m refkms faults --json``; the harness never imports ``refkms``). That setting is
laid over the user's ``--embedded-config`` (if any) and written as the TOML file the
reference KMS reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

FAULTS_TIMEOUT_S = 60.0


class EmbeddedConfigError(Exception):
    """The faults or the embedded configuration cannot be combined; a one-line reason."""


def fault_catalogue() -> list[dict[str, Any]]:
    """The reference KMS's fault catalogue, from ``python -m refkms faults --json``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "refkms", "faults", "--json"],
            capture_output=True,
            text=True,
            timeout=FAULTS_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedConfigError(f"cannot list the reference KMS faults: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise EmbeddedConfigError(f"cannot list the reference KMS faults: {last}")
    try:
        rows = json.loads(done.stdout)
    except ValueError as exc:
        raise EmbeddedConfigError(f"the fault catalogue is not JSON: {exc}") from None
    return [row for row in rows if isinstance(row, dict)]


def fault_settings(faults: Sequence[str], catalogue: list[dict[str, Any]]) -> dict[str, Any]:
    """The configuration the named faults need, merged; two that disagree are an error."""
    by_name = {str(row.get("name")): row for row in catalogue}
    merged: dict[str, Any] = {}
    owners: dict[tuple[str, ...], str] = {}
    for name in faults:
        row = by_name.get(name)
        if row is None:
            continue  # the reference KMS itself names the unknown fault when it starts
        needed = row.get("embedded_config") or {}
        for path, value in _leaves(needed):
            if path in owners and _get(merged, path) != value:
                raise EmbeddedConfigError(
                    f"faults {owners[path]} and {name} need different embedded "
                    f"configurations ({'.'.join(path)} = {_get(merged, path)!r} vs {value!r}); "
                    "show them one at a time"
                )
            owners[path] = name
            _set(merged, path, value)
    return merged


def write_config(
    settings: Mapping[str, Any], user_config: str | None, directory: Path
) -> tuple[Path | None, list[str]]:
    """The configuration file to start the reference KMS with, and what was changed.

    ``None`` when the faults need nothing (the user's file, if any, is used as it is).
    """
    if not settings:
        return (Path(user_config) if user_config else None), []
    base: dict[str, Any] = {}
    if user_config:
        try:
            base = tomllib.loads(Path(user_config).read_text(encoding="utf-8"))
        except OSError as exc:
            raise EmbeddedConfigError(f"{user_config}: cannot read ({exc.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise EmbeddedConfigError(f"{user_config}: not a TOML file ({exc})") from None
    changes = []
    for path, value in _leaves(settings):
        before = _get(base, path)
        if before != value:
            changes.append(
                f"{'.'.join(path)} = {_toml_value(value)}"
                + (f" (instead of {_toml_value(before)})" if before is not None else "")
            )
        _set(base, path, value)
    target = directory / "embedded-config.toml"
    target.write_text(toml_text(base), encoding="utf-8")
    return target, changes


def toml_text(document: Mapping[str, Any]) -> str:
    """A TOML document of plain tables, arrays of tables and scalar values."""
    lines: list[str] = []
    _table(lines, (), document)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    nested = []
    for key, value in table.items():
        tables = isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value)
        if isinstance(value, Mapping) or tables:
            nested.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_toml_value(value)}")
    for key, value in nested:
        here = (*path, key)
        if isinstance(value, Mapping):
            lines += ["", f"[{'.'.join(map(_key, here))}]"]
            _table(lines, here, value)
        else:
            for item in value:
                lines += ["", f"[[{'.'.join(map(_key, here))}]]"]
                _table(lines, here, item)


def _key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key) and key.isascii()
    return key if bare else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise EmbeddedConfigError(f"cannot write {type(value).__name__} value {value!r} as TOML")


def _leaves(
    mapping: Mapping[str, Any], path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out += _leaves(value, (*path, key))
        else:
            out.append(((*path, key), value))
    return out


def _get(mapping: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = mapping
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _set(mapping: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = mapping
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value
