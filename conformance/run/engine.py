"""Run one case against a target: PICS, probe, parse, unprotect, checks, verdict (DESIGN 2).

``Runner`` holds the probe and what a run learns once (the KMS's own certificate from one
KMS Initialize); ``Runner.run_case`` never raises for anything the target does: every
outcome becomes a ``CaseResult`` with a verdict and a one-line reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx

from conformance.catalogue.cases import Case, Step, missing_need, pics_applies, pics_values
from conformance.checks import CheckContext, HarnessError, HttpFacts, run_check
from conformance.checks.state import PREVIOUS
from conformance.checks.values import parse_datetime
from conformance.core.exchange import Exchange
from conformance.core.limits import CpuBudgetExceeded, checkpoint, cpu_budget, paused
from conformance.core.xmlsafe import StructureRejected, XmlRejected, check_tree, parse_xml
from conformance.model.messages import (
    KmsCertificate,
    KmsResponse,
    NotAKmsResponse,
    parse_response,
)
from conformance.probe.sender import MissingInput, PreconditionFailed, Probe
from conformance.profiles import Profile
from conformance.protection.response import unprotect
from conformance.protection.uestate import UeKeyStore, UnboundValue, with_delivered_signing_key
from conformance.report.redact import Capture
from conformance.run.control import CertificateView, control_step, restore_if_pending
from conformance.target.auth import auth_secrets
from conformance.target.file import Target, User
from conformance.verdicts.outcomes import (
    CheckResult,
    Outcome,
    Strength,
    Verdict,
    fold_checks,
    worse,
)
from conformance.verdicts.results import CaseResult, SecretValue, StepRecord

# How a step's request goes out: the probe builds it (a run) or evidence supplies it (replay).
Sender = Callable[[Mapping[str, Any], str], Exchange]

_MESSAGE_ELEMENTS = ("KmsInit", "KmsKeyProv", "KmsCertCache", "KmsLookup")
_KEY_ELEMENTS = re.compile(rb"UserDecryptKey|UserSigningKeySSK|KmsKeySet")
_NTP_SEGMENT = re.compile(r"^[0-9A-Fa-f]{16}$")


@dataclass
class StepView:
    """What a later step's checks may see of an earlier one (``CheckContext.history``)."""

    label: str
    exchange: Exchange
    response: KmsResponse | None
    raw: KmsResponse | None
    params: dict[str, Any]
    protection: Any = None


@dataclass
class _Parsed:
    raw: KmsResponse | None = None
    plain: KmsResponse | None = None
    protection: Any = None
    problem: str | None = None
    plaintext: bytes | None = None
    over_limit: str | None = None  # a structural [limits] key passed: the one-line reason


@dataclass
class Runner:
    target: Target
    profile: Profile
    strict: bool = False
    transport: httpx.BaseTransport | None = None
    _probe: Probe | None = None
    clock: Any = field(default=None)
    # Set: a case with changes_state: true is an error with this reason and sends nothing.
    refuse_state_changes: str = ""
    _doing: str = "the case"  # what the case was doing, for a CPU budget hit
    _capture: Capture | None = None

    @property
    def probe(self) -> Probe:
        if self._probe is None:
            self._probe = Probe(self.target, self.profile, transport=self.transport)
        return self._probe

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()

    def secrets(self) -> list[SecretValue]:
        return collect_secrets(self.target)

    # -- the run-wide precondition: the KMS's own certificate ----------------------------

    def init_certificate(self) -> KmsCertificate | None:
        """The KMS's own certificate, from the one KMS Initialize the probe makes per run;
        None when that failed (checks that need it are then skipped with the reason)."""
        try:
            with paused():  # it may send the run's one KMS Initialize
                return self.probe.init_certificate()
        except (MissingInput, PreconditionFailed):
            return None

    # -- one case -------------------------------------------------------------------------

    def run_case(self, case: Case, sender: Sender | None = None) -> CaseResult:
        started = time.monotonic()
        result = CaseResult(
            id=case.id,
            title=case.title,
            area=case.area,
            verdict=Verdict.PASS,
            reason="",
            reqs=case.reqs,
            clauses=(case.clause,),
            request_types=case.request_types,
            strength=case.strength,
            description=case.purpose,
        )
        self._doing = "the case"
        try:
            # The case's own work (parsing, decryption, checks) has a CPU budget; its
            # exchanges are bounded by timeout_s instead and pause the clock.
            with cpu_budget(self.target.limits.case_cpu_s):
                self._run(
                    case, result, _unbudgeted(sender or self.probe.send), live=sender is None
                )
        except CpuBudgetExceeded as exc:
            self._over_budget(case, result, exc)
        except HarnessError as exc:
            result.verdict, result.reason = Verdict.ERROR, f"harness error: {exc}"
        except Exception as exc:  # a harness bug: the case says so, the run goes on
            result.verdict = Verdict.ERROR
            result.reason = f"harness error: {type(exc).__name__}: {_one_line(str(exc))}"
        restore_if_pending(self.target, result)
        result.duration_s = time.monotonic() - started
        # The checks are done with the raw exchanges: redact where the secrets are known to
        # be, once, so that no reporter has to scan every string it writes. Keys the case
        # learnt (a delivered TrK/InK) are secrets of this case too.
        if self._capture is None:
            self._capture = Capture(self.secrets())
        capture = Capture([*self.secrets(), *result.secrets]) if result.secrets else self._capture
        capture.case(result)
        if self._probe is not None:
            self._probe.exchanges.clear()  # the result holds them; a run keeps no more
        return result

    def _run(self, case: Case, result: CaseResult, send: Sender, *, live: bool) -> None:
        if not pics_applies(case.pics, pics_values(self.target)):
            result.verdict = Verdict.NA
            result.reason = f"PICS: the target does not claim {case.pics}"
            return
        for need in case.needs:
            why = missing_need(need, self.target)
            if why:
                result.verdict, result.reason = Verdict.NA, f"PIXIT: {why}"
                return
        if case.changes_state and self.refuse_state_changes:
            result.verdict, result.reason = Verdict.ERROR, self.refuse_state_changes
            return
        history: list[StepView] = []
        named_results: list[CheckResult] = []
        store = UeKeyStore(self.target)
        result.secrets = store.secrets
        certificates = CertificateView()  # the KMS certificate the UE holds (control.py)
        for written in case.steps:
            if written.request == "control":
                # Learnt before any change, so the run-wide certificate stays the original.
                run_wide = self.init_certificate() if live else None
                why = control_step(self.target, written, result, certificates, run_wide, live=live)
                if why:
                    result.verdict, result.reason = Verdict.INCONC, f"{written.label}: {why}"
                    return
                continue
            try:
                spec = store.resolve(written.spec)
            except LookupError as exc:
                result.verdict, result.reason = Verdict.NA, f"PIXIT: needs {exc}"
                return
            except UnboundValue as exc:
                result.verdict, result.reason = Verdict.INCONC, f"{written.label}: {exc}"
                return
            step = replace(written, spec=spec)
            if live:
                self.probe.hold(store.held_users())
            try:
                exchange = send(step.spec, step.label)
            except MissingInput as exc:
                result.verdict, result.reason = Verdict.NA, f"PIXIT: {exc}"
                return
            except PreconditionFailed as exc:
                result.verdict, result.reason = Verdict.INCONC, f"precondition failed: {exc}"
                return
            finally:
                if live:
                    self.probe.hold(None)
            record = StepRecord(step.label, exchange)
            result.steps.append(record)
            if exchange.error is not None and step.spec.get("scheme", "https") != "http":
                verdict = (
                    Verdict.ERROR if exchange.error_kind in ("tls", "connect") else Verdict.FAIL
                )
                record.checks.append(self._transport_failure(case, exchange))
                result.checks.extend(record.checks)
                result.verdict = verdict
                result.reason = f"{step.label}: {exchange.error}"
                return
            number = int(step.spec.get("user", 1))
            user = store.user(number)
            self._doing = f"{step.label}: parsing the response"
            parsed = self._parse(exchange.body, user) if exchange.body else _Parsed()
            user = self._delivering_user(parsed, user, exchange.body)
            record.plaintext = parsed.plaintext
            certificates.seen(step.request, parsed.plain)
            if parsed.over_limit is not None:
                record.checks.append(self._over_limit(case, parsed.over_limit))
                result.checks.extend(record.checks)
                result.verdict = Verdict.FAIL
                result.reason = f"{step.label}: {parsed.over_limit}"
                return
            context = self._context(step, exchange, parsed, user, history)
            if certificates.changed:
                context.init_certificate = certificates.current(context.init_certificate)
                context.params.update(certificates.params())
            context.params[PREVIOUS] = store.previous(number)
            record.checks.extend(self._expectations(case, step, exchange, parsed))
            for name in step.checks:
                self._doing = f"{step.label}: check {name}"
                checkpoint()
                check_result = run_check(name, context)
                record.checks.append(check_result)
                named_results.append(check_result)
            result.checks.extend(record.checks)
            keys = store.after_step(
                step.label, number, parsed.plain, parsed.protection, self.profile
            )
            record.ue_keys = keys.as_dict()
            missing = [k for k in step.delivers if not store.delivered(step.label, k)]
            if missing:
                self._not_delivered(case, result, step, missing, keys.notes)
                return
            history.append(
                StepView(
                    step.label,
                    exchange,
                    parsed.plain,
                    parsed.raw,
                    context.params,
                    parsed.protection,
                )
            )
        self._verdict(case, result, named_results)

    def _not_delivered(
        self, case: Case, result: CaseResult, step: Step, missing: list[str], notes: list[str]
    ) -> None:
        """A step the later steps need a new key from delivered none the UE could adopt:
        the KMS may deliver (D.3.1), so that alone is inconc; a violation seen is a fail."""
        self._verdict(case, result, [])
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            return
        names = " and ".join(
            f"New{'TransportKey' if k == 'trk' else 'IntegrityKey'}" for k in missing
        )
        why = f" ({notes[0]})" if notes else ""
        result.verdict = worse(result.verdict, Verdict.INCONC)
        result.reason = (
            f"{step.label}: no {names} the UE could adopt{why}; the KMS may deliver one "
            "(D.3.1), and the later steps of the case need it"
        )

    def _delivering_user(self, parsed: _Parsed, user: User | None, body: bytes) -> User | None:
        """Profile ``delivering_response_keys = "delivered"``: judge the response that
        delivers an InK with that InK (conformance/protection/uestate.py)."""
        if user is None or self.profile.delivering_response_keys != "delivered" or not body:
            return user
        delivered = with_delivered_signing_key(user, parsed.plain, parsed.protection)
        if delivered is None:
            return user
        again = self._parse(body, delivered)
        parsed.plain, parsed.protection, parsed.plaintext = (
            again.plain,
            again.protection,
            again.plaintext,
        )
        return delivered

    def _verdict(self, case: Case, result: CaseResult, named: list[CheckResult]) -> None:
        verdict = fold_checks(result.checks, strict=self.strict)
        failing = [
            c
            for c in result.checks
            if c.outcome is Outcome.VIOLATION or (self.strict and c.outcome is Outcome.WARNING)
        ]
        if failing:
            first = failing[0]
            result.verdict = verdict
            result.reason = f"{first.name}: {first.message}"
            return
        warned = any(c.outcome is Outcome.WARNING for c in result.checks)
        if named and not warned and all(c.outcome is Outcome.SKIPPED for c in named):
            result.verdict = worse(verdict, Verdict.INCONC)
            result.reason = f"nothing could be decided: {named[0].name}: {named[0].message}"
            return
        warnings = [c for c in result.checks if c.outcome is Outcome.WARNING]
        result.verdict = verdict
        result.reason = f"warning: {warnings[0].name}: {warnings[0].message}" if warnings else ""

    # -- pieces ---------------------------------------------------------------------------

    def _parse(self, body: bytes, user: User | None) -> _Parsed:
        parsed = _Parsed()
        limits = self.target.limits
        try:
            root = parse_xml(body, max_bytes=self.target.target.max_body_bytes, limits=limits)
        except StructureRejected as exc:
            parsed.over_limit = f"response {exc}"
            return parsed
        except XmlRejected as exc:
            parsed.problem = f"body is not usable XML: {exc}"
            return parsed
        try:
            parsed.raw = parse_response(root, self.profile.namespace)
        except NotAKmsResponse as exc:
            parsed.problem = str(exc)
            return parsed
        parsed.plain, parsed.protection = unprotect(parsed.raw, user, self.profile)
        encryption = getattr(parsed.protection, "encryption", None)
        parsed.plaintext = getattr(encryption, "plaintext", None)
        if parsed.plaintext is not None and parsed.plain is not None:
            plain = parsed.plain.root if parsed.plain.root is not None else parsed.plain.element
            try:
                check_tree(plain, limits)  # the decrypted content is the target's too
            except StructureRejected as exc:
                parsed.over_limit = f"decrypted response {exc}"
        return parsed

    def _context(
        self,
        step: Step,
        exchange: Exchange,
        parsed: _Parsed,
        user: User | None,
        history: list[StepView],
    ) -> CheckContext:
        path = exchange.request.path
        params: dict[str, Any] = dict(step.spec)
        params["request_path"] = path
        params["user_id_encoding"] = self.target.profile.user_id_encoding
        segments = [unquote(s) for s in path.rstrip("/").split("/")]
        requested_ntp = None
        expected_uri = user.uri if user else None
        if step.request == "keyprov":
            after = _after(segments, "keyprov")
            if after:
                expected_uri = after[0]
                params["requested_uri"] = after[0]
            if len(after) > 1 and _NTP_SEGMENT.match(after[1]):
                requested_ntp = int(after[1], 16) >> 32  # NTP seconds: the upper 32 bits
        elif step.request == "cert":
            after = _after(segments, "cert")
            if after:
                params["requested_kms_uri"] = after[0]
        elif step.request == "lookup":
            after = _after(segments, "lookup")
            if after:
                params["requested_sip_uri"] = after[0]
        sent = parse_datetime(_request_time(exchange))
        return CheckContext(
            profile=self.profile,
            request_type=step.request if step.request != "raw" else None,
            response=parsed.plain,
            raw=parsed.raw,
            http=HttpFacts(
                status=exchange.status or 0,
                headers={k.lower(): v for k, v in exchange.headers},
                body=exchange.body,
                path=path,
                content_type=exchange.content_type,
            ),
            init_certificate=self.init_certificate(),
            user=user,
            expected_user_uri=expected_uri,
            request_instant=sent or datetime.now(UTC),
            requested_ntp=requested_ntp,
            allowed_skew_s=self.target.allowed_skew_s,
            params=params,
            exchange=exchange,
            protection=parsed.protection,
            target=self.target,
            history=list(history),
        )

    def _expectations(
        self, case: Case, step: Step, exchange: Exchange, parsed: _Parsed
    ) -> list[CheckResult]:
        strength = Strength(case.strength)
        # Over plain HTTP a refused connection is as good as a refusing status (REQ-001).
        refused = exchange.status is None and step.spec.get("scheme") == "http"
        results = [
            self._expect(
                case,
                "expect.status",
                good=refused or (exchange.status is not None and step.status_ok(exchange.status)),
                what=f"no HTTP answer ({exchange.error})"
                if refused
                else f"HTTP status {exchange.status}",
                expected=step.status_text,
                observed=_status_text(exchange),
                strength=strength,
            )
        ]
        wanted = step.expect_message
        if wanted is None:
            return results
        observed = _observed_message(parsed, exchange.body)
        if wanted == "no-key-material":
            good = not _KEY_ELEMENTS.search(exchange.body) and observed not in ("KmsKeyProv",)
            expected = "no key material"
        elif wanted == "none":
            good = parsed.raw is None or parsed.raw.kms_message is None
            expected = "no KmsMessage"
        else:
            good = observed == wanted
            expected = wanted
        results.append(
            self._expect(
                case,
                "expect.message",
                good=good,
                what=f"response carries {observed}",
                expected=expected,
                observed=observed,
                strength=strength,
            )
        )
        return results

    def _expect(
        self,
        case: Case,
        name: str,
        *,
        good: bool,
        what: str,
        expected: str,
        observed: str,
        strength: Strength,
    ) -> CheckResult:
        if good:
            outcome, message = Outcome.OK, what
        else:
            hard = strength is Strength.SHALL and not case.inferred
            outcome = Outcome.VIOLATION if hard else Outcome.WARNING
            message = f"expected {expected}, got {observed}"
        return CheckResult(
            name=name,
            outcome=outcome,
            message=message,
            reqs=case.reqs,
            clause=case.clause,
            strength=strength,
            expected=expected,
            observed=observed,
            inferred=case.inferred,
        )

    def _over_limit(self, case: Case, reason: str) -> CheckResult:
        return CheckResult(
            name="limits.structure",
            outcome=Outcome.VIOLATION,
            message=reason,
            reqs=case.reqs,
            clause=case.clause,
            expected="an answer within the target file's [limits]",
            observed=reason,
        )

    def _over_budget(self, case: Case, result: CaseResult, exc: CpuBudgetExceeded) -> None:
        """The case spent its CPU budget on what the target sent: ``fail``, naming the
        limit and where the time went; the checks done so far stay in the result."""
        reason = f"{self._doing}: answer {exc}"
        check = CheckResult(
            name="limits.case_cpu",
            outcome=Outcome.VIOLATION,
            message=reason,
            reqs=case.reqs,
            clause=case.clause,
            expected=f"checks done within limits.case_cpu_s ({exc.seconds:g} s of CPU)",
            observed=f"stopped after {exc.seconds:g} s of CPU in {self._doing}",
        )
        done = {id(c) for c in result.checks}
        for record in result.steps:
            result.checks.extend(c for c in record.checks if id(c) not in done)
        if result.steps:
            result.steps[-1].checks.append(check)
        result.checks.append(check)
        result.verdict, result.reason = Verdict.FAIL, reason

    def _transport_failure(self, case: Case, exchange: Exchange) -> CheckResult:
        return CheckResult(
            name="expect.answer",
            outcome=Outcome.VIOLATION,
            message=exchange.error or "no answer",
            reqs=case.reqs,
            clause=case.clause,
            expected="an HTTP response",
            observed=f"{exchange.error_kind}: {exchange.error}",
        )


def _unbudgeted(send: Sender) -> Sender:
    """``send`` with the case's CPU clock stopped while the exchange runs."""

    def exchange(step: Mapping[str, Any], label: str) -> Exchange:
        with paused():
            return send(step, label)

    return exchange


def collect_secrets(target: Target) -> list[SecretValue]:
    """Every secret a run may put on the wire or see decrypted, for the redactor."""
    found: list[SecretValue] = []
    for index, user in enumerate(target.users, start=1):
        if user.token is not None:
            found.append(SecretValue(f"token-user{index}", user.token.reveal()))
        if user.trk is not None:
            found.append(SecretValue("trk", user.trk.key.reveal()))
        if user.ink is not None:
            found.append(SecretValue("ink", user.ink.key.reveal()))
    for name in ("expired", "wrong_scope", "malformed", "bad_signature"):
        token = getattr(target.tokens, name)
        if token is not None:
            found.append(SecretValue(f"token-{name}", token.reveal()))
    found += auth_secrets(target)  # secret header values, client key passphrases
    return [s for s in found if s.value]


def _after(segments: list[str], word: str) -> list[str]:
    if word in segments:
        return segments[segments.index(word) + 1 :]
    return []


def _request_time(exchange: Exchange) -> str | None:
    match = re.search(rb"<(?:\w+:)?Time>([^<]{1,64})</", exchange.request.body)
    return match.group(1).decode("ascii", "replace") if match else None


def _observed_message(parsed: _Parsed, body: bytes) -> str:
    if parsed.raw is None:
        if not body:
            return "an empty body"
        return parsed.problem or "no KmsResponse"
    if parsed.raw.kms_error is not None and parsed.raw.kms_message is None:
        return "KmsError"
    view = parsed.plain or parsed.raw
    message = view.kms_message
    if message is None:
        return "no KmsMessage"
    names = [c.local for c in message.children]
    for name in names:
        if name in _MESSAGE_ELEMENTS:
            return name
    return ", ".join(names) or "an empty KmsMessage"


def _status_text(exchange: Exchange) -> str:
    """The status as a reason shows it; a redirect says where to (it is never followed)."""
    status = exchange.status
    if status is None:
        return f"no answer ({exchange.error_kind})"
    if 300 <= status < 400:
        location = exchange.header("location")
        return f"{status} (redirect to {location or 'no Location'}; not followed)"
    return str(status)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:197] + "..."
