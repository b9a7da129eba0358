"""``python -m refkms serve|faults|kms-cert``: DESIGN.md section 5 flags, for the harness CLI."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from refkms.faults import (
    ActiveFaults,
    catalogue_json,
    catalogue_text,
    embedded_config,
    fault_names,
)
from refkms.profiles import DEFAULT_PROFILE, PROFILES

EXIT_USAGE = 2


class _QuietOnceClosed:
    """Standard output that goes quiet when its reader leaves (``faults | head``, ``serve |
    head -3``): not an error, and a server keeps serving. The descriptor is pointed at
    /dev/null so that what is still buffered cannot fail again at exit."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._closed = False

    def write(self, text: str) -> int:
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self._closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    if not isinstance(sys.stdout, _QuietOnceClosed):
        sys.stdout = _QuietOnceClosed(sys.stdout)  # type: ignore[assignment]
    parser = argparse.ArgumentParser(prog="python -m refkms", description="The reference KMS.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the reference KMS on loopback")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--http", action="store_true", help="plain HTTP, for debugging")
    serve.add_argument("--profile", default=DEFAULT_PROFILE)
    serve.add_argument("--fault", nargs="+", action="extend", default=[], metavar="NAME")
    serve.add_argument("--config", metavar="FILE")
    serve.add_argument("--state", metavar="DIR")
    serve.add_argument("--users", type=int, default=0, metavar="N", help="also ue1..ueN")
    serve.add_argument(
        "--rotate",
        metavar="KEYS",
        help="deliver new keys in init and keyprov: trk, ink or trk,ink (refkms.rotation)",
    )
    serve.add_argument(
        "--cert-rotation",
        action="store_true",
        help="let `kms-cert` replace the own certificate; claims PICS kms_cert_rotation",
    )
    kms_cert = sub.add_parser(
        "kms-cert", help="replace the running KMS's own certificate, or restore the original"
    )
    kms_cert.add_argument("--state", required=True, metavar="DIR")
    kms_cert.add_argument("action", choices=("replace", "restore"))
    faults = sub.add_parser("faults", help="list the fault catalogue")
    faults.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "faults":
        print(catalogue_json() if args.json else catalogue_text(), flush=True)
        return 0
    if args.command == "kms-cert":
        from refkms.certchange import main as kms_cert_main

        return kms_cert_main(args.state, args.action)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    # Imported here so that "faults" answers without loading the crypto layer.
    from refkms.config import ConfigError, config_from_mapping, load_config, with_rotation
    from refkms.domain import Domain
    from refkms.loadusers import with_load_users
    from refkms.server import run_forever
    from refkms.state import StateDir

    unknown = [name for name in args.fault if name not in fault_names()]
    if unknown:
        return _usage(f"unknown fault {unknown[0]!r}; known faults: {', '.join(fault_names())}")
    if args.profile not in PROFILES:
        return _usage(f"unknown profile {args.profile!r}; known profiles: {', '.join(PROFILES)}")
    try:
        config = load_config(Path(args.config) if args.config else None)
        if not args.config and fault_config(args.fault):
            # A fault observable only in some mode (e.g. rotation on) gets that mode.
            config = config_from_mapping(fault_config(args.fault))
            print(f"refkms: configuration for the faults: {fault_config(args.fault)}", flush=True)
        config = with_load_users(config, args.users)
    except ConfigError as exc:
        return _usage(f"bad configuration: {exc}")
    if args.rotate:
        keys = {k.strip() for k in args.rotate.split(",") if k.strip()}
        if not keys or not keys <= {"trk", "ink"}:
            return _usage(f"--rotate {args.rotate!r}: give trk, ink or trk,ink")
        config = with_rotation(config, trk="trk" in keys, ink="ink" in keys)
    if args.cert_rotation:
        config = replace(config, kms_cert_rotation=True)
    state_path = Path(args.state) if args.state else Path(tempfile.mkdtemp(prefix="refkms-"))
    print(f"refkms: state directory {state_path.resolve()}", flush=True)
    state = StateDir(state_path)
    domain = Domain(config, PROFILES[args.profile], ActiveFaults(args.fault), state)
    return run_forever(domain, state, args.port, use_tls=not args.http)


def fault_config(names: Sequence[str]) -> dict[str, Any]:
    """The configuration the named faults need, merged table by table."""
    merged: dict[str, Any] = {}
    for name in names:
        for key, value in embedded_config(name).items():
            if isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def _usage(message: str) -> int:
    print(f"refkms: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
