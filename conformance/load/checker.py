"""The checker: sampled iterations through the catalogue's checks, off the request path.

Each Locust process (local, or each worker) starts ``python -m conformance.load.checker``
children and hands them recorded iterations over a pipe. A child is a plain process
(no gevent): it runs ``engine.Runner.run_case`` on the recorded exchanges, so schema,
envelope, protection and key-material checks (the RSK pairing included) are exactly the
catalogue's, and it writes redacted evidence for its first few failures. CPU-bound checks
cannot share a gevent loop with the load, hence the processes.

``CheckerPool`` (the parent side) never blocks a virtual user: ``submit`` queues a job
for a writer thread, and when ``max_pending`` jobs are already waiting or being checked
the job is dropped and counted as dropped, never as checked.
"""

from __future__ import annotations

import collections
import pickle
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

_HEADER = struct.Struct(">I")
_KEY_SET = re.compile(rb"<(?:[\w.-]+:)?KmsKeySet[\s>/]")
# Key sets count as validated only when both key-material checks held on them.
_KEY_CHECKS = ("keyset.sakke", "keyset.eccsi")


@dataclass
class Job:
    """One recorded iteration of one virtual UE (the user carries its token and keys)."""

    scenario: str
    user: Any  # conformance.target.file.User
    exchanges: list[Any]  # conformance.core.exchange.Exchange, one per scenario step


@dataclass
class Tally:
    """What the checks of one Locust process found (summed over processes by the master)."""

    sampled: int = 0
    checked: int = 0
    dropped: int = 0
    failed: int = 0  # iterations with at least one conformance failure
    warned: int = 0
    errors: int = 0  # iterations the checker could not judge (harness error)
    key_sets_validated: int = 0
    check_cpu_s: float = 0.0  # CPU time the checker processes spent on the checks
    failures: dict[str, int] = field(default_factory=dict)  # failure id -> count
    examples: list[dict[str, Any]] = field(default_factory=list)  # first few, with evidence

    def as_dict(self) -> dict[str, Any]:
        return {
            "sampled": self.sampled,
            "checked": self.checked,
            "dropped": self.dropped,
            "failed": self.failed,
            "warned": self.warned,
            "errors": self.errors,
            "key_sets_validated": self.key_sets_validated,
            "check_cpu_s": round(self.check_cpu_s, 3),
            "failures": dict(self.failures),
            "examples": list(self.examples),
        }


def write_frame(stream: IO[bytes], payload: Any) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    data = _read_exactly(stream, size)
    if data is None:
        return None
    return pickle.loads(data)  # our own child/parent only: never data from the target


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- the parent side -------------------------------------------------------------------


class CheckerPool:
    """``processes`` checker children fed through bounded, non-blocking submission."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        processes: int = 1,
        max_pending: int = 64,
        log: Path | None = None,
    ) -> None:
        self.tally = Tally()
        self.max_pending = max_pending
        self.example_limit = int(settings.get("evidence_limit", 5))
        self._lock = threading.Lock()
        self._children: list[_Child] = []
        self._log = log.open("ab") if log is not None else subprocess.DEVNULL
        for number in range(processes):
            child = _Child(self, {**settings, "child": number}, self._log)
            self._children.append(child)

    @property
    def pending(self) -> int:
        return sum(c.pending for c in self._children)

    def wait_ready(self, timeout_s: float) -> None:
        """Until every child has loaded the target and made its KMS Initialize (or died),
        so that the checks do not start the load with a backlog."""
        deadline = time.monotonic() + timeout_s
        for child in self._children:
            child.ready.wait(max(0.0, deadline - time.monotonic()))

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False (and counted as dropped) when the bound is reached."""
        self.tally.sampled += 1
        alive = [c for c in self._children if c.alive]
        if not alive or self.pending >= self.max_pending:
            self.tally.dropped += 1
            return False
        min(alive, key=lambda c: c.pending).submit(job)
        return True

    def drain(self, timeout_s: float) -> None:
        """Wait for the queued jobs; those still unchecked at the deadline count as dropped."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            if not any(c.alive for c in self._children):
                break
            time.sleep(0.05)
        for child in self._children:
            child.close()
        for child in self._children:
            child.wait(max(0.5, deadline - time.monotonic()))
        with self._lock:
            self.tally.dropped += sum(c.pending for c in self._children)
            for child in self._children:
                child.abandon()

    def problems(self) -> list[str]:
        """Checker processes that died: what was queued for them counts as dropped."""
        found = []
        for number, child in enumerate(self._children):
            code = child.process.poll()
            if code not in (None, 0):
                found.append(f"checker {number} exited with status {code} (see its log)")
        return found

    def record(self, result: Mapping[str, Any]) -> None:
        with self._lock:
            tally = self.tally
            tally.checked += 1
            tally.key_sets_validated += int(result.get("key_sets", 0))
            tally.check_cpu_s += float(result.get("cpu_s", 0.0))
            if result.get("error"):
                tally.errors += 1
            failures = result.get("failures") or []
            if failures:
                tally.failed += 1
                for failure in failures:
                    key = str(failure["id"])
                    tally.failures[key] = tally.failures.get(key, 0) + 1
                if len(tally.examples) < self.example_limit:
                    tally.examples.append(
                        {"failures": failures[:5], "evidence": result.get("evidence")}
                    )
            elif result.get("warnings"):
                tally.warned += 1

    def close(self) -> None:
        for child in self._children:
            child.close()
            child.wait(5)
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]


class _Child:
    def __init__(self, pool: CheckerPool, settings: Mapping[str, Any], log: Any) -> None:
        self.pool = pool
        self.pending = 0
        self.alive = True
        self._queue: collections.deque[Job | None] = collections.deque()
        self._ready = threading.Event()
        self.ready = threading.Event()  # set by the child's first frame, or when it dies
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conformance.load.checker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        write_frame(self.process.stdin, dict(settings))
        self._writer = threading.Thread(target=self._write_loop, daemon=True)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._writer.start()
        self._reader.start()

    def submit(self, job: Job) -> None:
        self.pending += 1
        self._queue.append(job)
        self._ready.set()

    def close(self) -> None:
        self._queue.append(None)
        self._ready.set()

    def wait(self, timeout_s: float) -> None:
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # Every result the child wrote is read before anything still pending counts as
        # dropped: a job is either checked or dropped, never both.
        self._reader.join(10)

    def abandon(self) -> None:
        self.pending = 0

    def _write_loop(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            while True:
                while not self._queue:
                    self._ready.wait(0.5)
                    self._ready.clear()
                job = self._queue.popleft()
                if job is None:
                    stdin.close()
                    return
                write_frame(stdin, job)
        except (OSError, ValueError):
            self.alive = False

    def _read_loop(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                result = read_frame(stdout)
                if result is None:
                    break
                if result.get("ready"):
                    self.ready.set()
                    continue
                self.pool.record(result)
                self.pending = max(0, self.pending - 1)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass
        self.alive = False
        self.ready.set()


# -- the child side ----------------------------------------------------------------------


class _Checker:
    def __init__(self, settings: Mapping[str, Any]) -> None:
        from conformance.load.scenarios import load_scenarios
        from conformance.profiles import get_profile
        from conformance.report.redact import Redactor
        from conformance.run.engine import Runner, collect_secrets
        from conformance.target.file import load_target

        self.base = load_target(str(settings["target"]))
        self.runner = Runner(self.base, get_profile(self.base.profile.release))
        # The one KMS Initialize (user 1 of [[users]]) that gives the KMS certificate.
        self.runner.init_certificate()
        self.scenarios = load_scenarios()
        self.output = Path(str(settings["output"]))
        self.label = f"{settings.get('label', 'local')}-{settings.get('child', 0)}"
        self.evidence_limit = int(settings.get("evidence_limit", 5))
        self.evidence_written = 0
        self._secrets = collect_secrets
        self._redactor = Redactor

    def check(self, job: Job) -> dict[str, Any]:
        from conformance.verdicts.outcomes import Outcome

        scenario = self.scenarios[job.scenario]
        case = scenario.case
        assert case is not None
        by_label = {exchange.label: exchange for exchange in job.exchanges}
        self.runner.target = replace(self.base, users=(job.user, *self.base.users))

        def send(spec: Mapping[str, Any], label: str) -> Any:
            return by_label[label]

        result = self.runner.run_case(case, sender=send)
        failures = []
        warnings = []
        for step in result.steps:
            for check in step.checks:
                if check.outcome is Outcome.VIOLATION:
                    failures.append(
                        {
                            "id": f"{case.id}/{step.label}:{check.name}",
                            "check": check.name,
                            "reqs": list(check.reqs),
                            "message": check.message,
                        }
                    )
                elif check.outcome is Outcome.WARNING:
                    warnings.append(check.name)
        key_sets = 0
        for step in result.steps:
            outcomes = {c.name: c.outcome for c in step.checks}
            if all(outcomes.get(name) is Outcome.OK for name in _KEY_CHECKS):
                key_sets += len(_KEY_SET.findall(step.plaintext or step.exchange.body))
        error = result.reason if result.verdict.value == "error" else None
        evidence = None
        if failures:
            # load.json and the master/worker messages get no secret either.
            redactor = self._redactor_for(result)
            for failure in failures:
                failure["message"] = redactor.text(failure["message"])
            if self.evidence_written < self.evidence_limit:
                evidence = self._write_evidence(result, redactor)
        return {
            "failures": failures,
            "warnings": warnings,
            "key_sets": key_sets,
            "error": error,
            "evidence": evidence,
        }

    def _redactor_for(self, result: Any) -> Any:
        """The target's secrets and the private key material of this iteration's answers."""
        from conformance.report.redact import key_material

        found = []
        for step in result.steps:
            found += key_material(step.exchange.body)
            if step.plaintext:
                found += key_material(step.plaintext)
        return self._redactor(self._secrets(self.runner.target)).extended(found)

    def _write_evidence(self, result: Any, redactor: Any) -> str:
        from conformance.report.evidence import safe_name, write_case_evidence

        self.evidence_written += 1
        name = safe_name(f"{result.id}-{self.label}-{self.evidence_written}")
        directory = self.output / "evidence" / name
        write_case_evidence(result, directory, redactor)
        return f"evidence/{name}"


def child_main(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    settings = read_frame(stdin)
    if settings is None:
        return 2
    try:
        checker = _Checker(settings)
    except Exception as exc:  # reported on stderr (the checker log), one line
        print(f"checker: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    write_frame(stdout, {"ready": True})
    while True:
        job = read_frame(stdin)
        if job is None:
            return 0
        started = time.process_time()
        try:
            result = checker.check(job)
        except Exception as exc:  # a harness bug: counted as an error, never as a pass
            result = {
                "failures": [],
                "warnings": [],
                "key_sets": 0,
                "error": f"{type(exc).__name__}: {exc}",
                "evidence": None,
            }
        result["cpu_s"] = time.process_time() - started
        write_frame(stdout, result)


def _main(argv: Sequence[str]) -> int:
    return child_main(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
