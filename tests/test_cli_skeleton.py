"""The command line answers and uses the exit statuses of DESIGN.md section 3."""

import subprocess
import sys


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for name in ("run", "list", "explain", "check", "serve", "faults", "replay"):
        assert name in out.stdout
