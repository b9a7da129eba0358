"""Running cases: the engine, the pytest plugin, the CLI commands, replay, the offline check.

engine.py runs one case (PICS, probe, unprotect, checks, verdict), control.py its control
steps, lanes.py concurrent lanes, plugin.py the pytest plugin, cli.py and runcmd.py the
command line (explain.py, bundle.py, replay.py, offline.py with capture.py and
redacted_input.py, preflight.py, embedded_config.py, pipes.py). The load command is the
load package, in this stage too. May import every stage; the harness never imports refkms.
"""
