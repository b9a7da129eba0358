"""The ``kms-conformance`` command line (contract: DESIGN.md section 5)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_CONFIG = 2
EXIT_INCONC = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_CONFIG
    handler = _HANDLERS.get(args.command, _not_yet)
    return handler(args)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kms-conformance",
        description="Conformance harness for 3GPP TS 33.180 Annex D Key Management Servers.",
    )
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the case catalogue against a target KMS")
    run.add_argument("--target", metavar="FILE")
    run.add_argument("--output", metavar="DIR", default="reports/latest")
    run.add_argument("--cases", nargs="+", metavar="GLOB|ID")
    run.add_argument("--strict", action="store_true")
    run.add_argument("--embedded-fault", action="append", default=[], metavar="NAME")
    run.add_argument("-n", type=int, default=0, metavar="N")
    run.add_argument("--embedded-profile", metavar="NAME", help="profile of the embedded KMS")
    run.add_argument("--embedded-config", metavar="FILE", help="configuration of the embedded KMS")

    lst = sub.add_parser("list", help="list every case")
    lst.add_argument("--json", action="store_true")

    explain = sub.add_parser("explain", help="what a case sends and checks")
    explain.add_argument("case_id", metavar="ID")

    check = sub.add_parser("check", help="check a captured response offline")
    check.add_argument("file", metavar="FILE.xml")
    check.add_argument("--init", metavar="INIT.xml")
    check.add_argument("--request-type", metavar="T")
    check.add_argument("--target", metavar="FILE")

    serve = sub.add_parser("serve", help="start the reference KMS")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--http", action="store_true")
    serve.add_argument("--profile", default="ts33180-r17")
    serve.add_argument("--fault", action="append", default=[], metavar="NAME")
    serve.add_argument("--config", metavar="FILE")
    serve.add_argument("--state", metavar="DIR")
    serve.add_argument(
        "--rotate", metavar="KEYS", help="deliver new keys in init/keyprov: trk, ink or trk,ink"
    )

    faults = sub.add_parser("faults", help="list the reference KMS fault catalogue")
    faults.add_argument("--json", action="store_true")

    replay = sub.add_parser("replay", help="re-send the recorded requests of one case")
    replay.add_argument("dir", metavar="DIR")
    replay.add_argument("case_id", metavar="CASE-ID")
    replay.add_argument("--target", metavar="FILE", help="send to this target instead")

    coverage = sub.add_parser(
        "coverage", help="requirement coverage of the catalogue (COVERAGE.md)"
    )
    coverage.add_argument("--write", action="store_true", help="rewrite testcases/COVERAGE.md")
    return parser


def _delegate_to_refkms(args: argparse.Namespace) -> int:
    """Run the reference KMS in its own process: the harness never imports ``refkms``."""
    argv = [sys.executable, "-m", "refkms", args.command]
    if args.command == "serve":
        argv += ["--port", str(args.port), "--profile", args.profile]
        argv += ["--http"] if args.http else []
        for name in args.fault:
            argv += ["--fault", name]
        argv += ["--config", args.config] if args.config else []
        argv += ["--state", args.state] if args.state else []
        argv += ["--rotate", args.rotate] if args.rotate else []
    elif args.json:
        argv.append("--json")
    sys.stdout.flush()
    sys.stderr.flush()
    # exec keeps one process, so SIGINT/SIGTERM reach the server directly.
    os.execv(sys.executable, argv)
    return EXIT_CONFIG  # pragma: no cover - execv does not return


def _check(args: argparse.Namespace) -> int:
    from conformance import offline

    return offline.main(args.file, args.init, args.request_type, args.target)


def _run(args: argparse.Namespace) -> int:
    from conformance.runcmd import RunOptions, run

    options = RunOptions(
        target=args.target,
        output=args.output,
        cases=args.cases or (),
        strict=args.strict,
        faults=args.embedded_fault,
        workers=args.n,
        embedded_profile=args.embedded_profile,
        embedded_config=args.embedded_config,
    )
    return run(options)


def _replay(args: argparse.Namespace) -> int:
    from conformance import replay

    return replay.main(args.dir, args.case_id, args.target)


def _list(args: argparse.Namespace) -> int:
    from conformance.runcmd import list_cases

    return list_cases(args.json)


def _explain(args: argparse.Namespace) -> int:
    from conformance.runcmd import explain

    return explain(args.case_id)


def _coverage(args: argparse.Namespace) -> int:
    from conformance.runcmd import coverage

    return coverage(args.write)


def _not_yet(args: argparse.Namespace) -> int:
    print(
        f"kms-conformance {args.command}: not implemented yet in this build (see the open issues)",
        file=sys.stderr,
    )
    return EXIT_CONFIG


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": _check,
    "run": _run,
    "list": _list,
    "explain": _explain,
    "coverage": _coverage,
    "replay": _replay,
    "serve": _delegate_to_refkms,
    "faults": _delegate_to_refkms,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
