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
    from conformance.run import pipes

    pipes.install()  # a reader that closes the pipe early is not an error (pipes.py)
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
    # Repeated list options add up (--cases A --cases B runs both), as argparse users expect.
    run.add_argument("--cases", nargs="+", action="extend", default=[], metavar="GLOB|ID")
    run.add_argument("--strict", action="store_true")
    run.add_argument("--embedded-fault", nargs="+", action="extend", default=[], metavar="NAME")
    run.add_argument("-n", type=int, default=0, metavar="N")
    run.add_argument("--embedded-profile", metavar="NAME", help="profile of the embedded KMS")
    run.add_argument("--embedded-config", metavar="FILE", help="configuration of the embedded KMS")
    run.add_argument("--waivers", metavar="FILE", help="known deviations (TOML, see README)")

    lst = sub.add_parser("list", help="list every case")
    lst.add_argument("--json", action="store_true")

    explain = sub.add_parser("explain", help="what a case sends and checks")
    explain.add_argument("case_id", metavar="ID")

    check = sub.add_parser("check", help="check a captured response offline")
    check.add_argument(
        "file",
        metavar="FILE.xml|DIR|FILE.har",
        help="a response body, a folder of request/response files (an evidence step or "
        "case folder) or a HAR 1.2 file",
    )
    check.add_argument("--init", metavar="INIT.xml")
    check.add_argument("--request-type", metavar="T")
    check.add_argument("--target", metavar="FILE")
    check.add_argument("--status", type=int, metavar="N", help="the HTTP status of the answer")
    check.add_argument(
        "--url",
        metavar="PATH",
        help="the request URL or path, e.g. .../keyprov/sip%%3Aalice%%40example.org/"
        "D6B4323200000000 (request type, requested URI, time, cache number)",
    )
    check.add_argument("--kms-uri", metavar="URI", help="the KMS URI of the KMS under test")

    serve = sub.add_parser("serve", help="start the reference KMS")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--http", action="store_true")
    serve.add_argument("--profile", default="ts33180-r17")
    serve.add_argument("--fault", nargs="+", action="extend", default=[], metavar="NAME")
    serve.add_argument("--config", metavar="FILE")
    serve.add_argument("--state", metavar="DIR")
    serve.add_argument("--users", type=int, default=0, metavar="N", help="also UEs ue1..ueN")
    serve.add_argument(
        "--rotate", metavar="KEYS", help="deliver new keys in init/keyprov: trk, ink or trk,ink"
    )
    serve.add_argument(
        "--cert-rotation",
        action="store_true",
        help="the harness may replace the KMS's own certificate (PICS kms_cert_rotation)",
    )

    faults = sub.add_parser("faults", help="list the reference KMS fault catalogue")
    faults.add_argument("--json", action="store_true")

    replay = sub.add_parser("replay", help="re-send the recorded requests of one case")
    replay.add_argument("dir", metavar="DIR")
    replay.add_argument("case_id", metavar="CASE-ID")
    replay.add_argument("--target", metavar="FILE", help="send to this target instead")

    _add_load_parser(sub)
    target = sub.add_parser("target", help="write a commented minimal target file")
    target.add_argument("--template", action="store_true", required=True)
    target.add_argument("-o", "--output", metavar="FILE", help="write there (default: stdout)")

    coverage = sub.add_parser(
        "coverage", help="requirement coverage of the catalogue (COVERAGE.md)"
    )
    coverage.add_argument("--write", action="store_true", help="rewrite testcases/COVERAGE.md")
    _add_workflow_commands(sub)
    return parser


def _add_workflow_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """diff, report, bundle, verify: the certification workflow (issue 14)."""
    diff = sub.add_parser("diff", help="what changed between two runs")
    diff.add_argument("old", metavar="OLD", help="results.json or its output folder")
    diff.add_argument("new", metavar="NEW", help="results.json or its output folder")
    diff.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    diff.add_argument("--fail-on", choices=("regressions",), help="exit 1 on any new fail")

    report = sub.add_parser("report", help="render a report of a finished run")
    report.add_argument("dir", metavar="OUTPUT_DIR")
    report.add_argument("--pdf", action="store_true", help="write OUTPUT_DIR/report.pdf (PCTR)")
    report.add_argument("--lab", metavar="LAB.toml", help="test laboratory identification")

    bundle = sub.add_parser("bundle", help="sign a run's results into a certification bundle")
    bundle.add_argument("dir", metavar="OUTPUT_DIR")
    bundle.add_argument("--key", required=True, metavar="LAB_KEY.pem", help="P-256 or Ed25519")
    bundle.add_argument("-o", "--output", required=True, metavar="BUNDLE.zip")
    bundle.add_argument("--allow-incomplete", action="store_true", help="not a certification")
    bundle.add_argument("--lab", metavar="LAB.toml", help="for the PDF report if one is rendered")

    verify = sub.add_parser("verify", help="verify a bundle offline")
    verify.add_argument("bundle", metavar="BUNDLE.zip")
    verify.add_argument("--pubkey", required=True, metavar="LAB.pub")


def _diff(args: argparse.Namespace) -> int:
    from conformance.report import diff

    return diff.main(args.old, args.new, args.format, fail_on=args.fail_on)


def _report(args: argparse.Namespace) -> int:
    from conformance.report import pdf

    return pdf.main(args.dir, args.pdf, args.lab)


def _bundle(args: argparse.Namespace) -> int:
    from conformance.run import bundle

    return bundle.make_main(args.dir, args.key, args.output, args.allow_incomplete, args.lab)


def _verify(args: argparse.Namespace) -> int:
    from conformance.run import bundle

    return bundle.verify_main(args.bundle, args.pubkey)


def _add_load_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = sub.add_parser("load", help="the catalogue's checks under load (Locust)")
    load.add_argument("--target", metavar="FILE")
    load.add_argument("--users", type=int, default=10, metavar="N")
    load.add_argument("--spawn-rate", type=float, metavar="R", help="users started per second")
    load.add_argument("--run-time", default="30s", metavar="T", help="e.g. 10s, 2m")
    load.add_argument("--scenario", default="provision", metavar="NAME")
    load.add_argument("--check-sample", type=float, default=1.0, metavar="P")
    load.add_argument("--master", action="store_true")
    load.add_argument("--worker", action="store_true")
    load.add_argument("--master-host", metavar="H")
    load.add_argument("--master-port", type=int, default=5557, metavar="PORT")
    load.add_argument("--master-bind-host", default="127.0.0.1", metavar="H")
    load.add_argument("--expect-workers", type=int, default=1, metavar="N")
    load.add_argument("--output", default="reports/load", metavar="DIR")
    load.add_argument("--max-p95-ms", type=float, metavar="X")
    load.add_argument("--min-rps", type=float, metavar="X")
    load.add_argument("--max-error-rate", type=float, metavar="X", help="a fraction, 0..1")
    load.add_argument("--iterations", type=int, default=0, metavar="N", help="per user")
    load.add_argument("--checkers", type=int, default=1, metavar="N", help="per process")
    load.add_argument("--max-pending", type=int, default=64, metavar="N")
    load.add_argument("--embedded-fault", action="append", default=[], metavar="NAME")


def _load(args: argparse.Namespace) -> int:
    # Locust imports gevent, which patches the standard library: before anything else, and
    # only here, so that no other command ever runs under gevent.
    import locust  # noqa: F401

    from conformance.load.command import LoadOptions, run_load

    options = LoadOptions(
        **{k: v for k, v in vars(args).items() if k not in ("command", "embedded_fault")},
        faults=args.embedded_fault,
    )
    return run_load(options)


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
        argv += ["--users", str(args.users)] if args.users else []
        argv += ["--rotate", args.rotate] if args.rotate else []
        argv += ["--cert-rotation"] if args.cert_rotation else []
    elif args.json:
        argv.append("--json")
    sys.stdout.flush()
    sys.stderr.flush()
    # exec keeps one process, so SIGINT/SIGTERM reach the server directly.
    os.execv(sys.executable, argv)
    return EXIT_CONFIG  # pragma: no cover - execv does not return


def _check(args: argparse.Namespace) -> int:
    from conformance.run import offline

    return offline.main(
        args.file,
        args.init,
        args.request_type,
        args.target,
        status=args.status,
        url=args.url,
        kms_uri=args.kms_uri,
    )


def _run(args: argparse.Namespace) -> int:
    from conformance.run.runcmd import RunOptions, run

    options = RunOptions(
        target=args.target,
        output=args.output,
        cases=args.cases or (),
        strict=args.strict,
        faults=args.embedded_fault,
        workers=args.n,
        embedded_profile=args.embedded_profile,
        embedded_config=args.embedded_config,
        waivers=args.waivers,
    )
    return run(options)


def _replay(args: argparse.Namespace) -> int:
    from conformance.run import replay

    return replay.main(args.dir, args.case_id, args.target)


def _list(args: argparse.Namespace) -> int:
    from conformance.run.runcmd import list_cases

    return list_cases(args.json)


def _explain(args: argparse.Namespace) -> int:
    from conformance.run.explain import explain

    return explain(args.case_id)


def _coverage(args: argparse.Namespace) -> int:
    from conformance.run.runcmd import coverage

    return coverage(args.write)


def _target(args: argparse.Namespace) -> int:
    from conformance.target import template as target_template

    return target_template.main(args.output)


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
    "diff": _diff,
    "report": _report,
    "bundle": _bundle,
    "verify": _verify,
    "load": _load,
    "target": _target,
    "serve": _delegate_to_refkms,
    "faults": _delegate_to_refkms,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
