"""``bundle`` and ``verify``: a run's results as a signed, offline-verifiable package.

``kms-conformance bundle OUTPUT_DIR --key LAB_KEY.pem -o bundle.zip`` packs what a run wrote
(results.json, junit.xml, report.html, report.pdf, evidence/, the waivers and campaign)
with a description of the target without secrets (target.json) and of the tools
(environment.json: catalogue hash, Python, lxml, cryptography, OpenSSL), and a manifest:
an in-toto Statement v1 whose subjects are those files with their SHA-256 digests, in a
DSSE envelope signed with the lab's ECDSA P-256 or Ed25519 key. ``verify`` checks the
zip, every digest, that no file is missing or extra, and the signature, offline. The format
and a recipe for checking it with openssl and a few lines of Python are in docs/BUNDLE.md.

A bundle is a certification only when the run has no unwaived failure, no unexpected pass,
no error, no inconclusive case and every selected case ran; otherwise ``bundle`` refuses,
unless ``--allow-incomplete``, which marks the statement "not a certification".
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import platform
import sys
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conformance import __version__

ENVELOPE = "bundle.dsse.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:kms-conformance:certification:1"
RUN_FILES = ("results.json", "junit.xml", "report.html", "report.pdf")
OPTIONAL_FILES = ("campaign.json", "waivers.toml")
# The zip is written in one canonical form, so that verify can demand it byte for byte.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o644 << 16

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class BundleError(Exception):
    """bundle cannot proceed: exit 2 (usage) unless ``refused`` (exit 1, incomplete run)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class VerifyFailed(Exception):
    """The bundle does not verify: one line why (exit 1)."""


# -- DSSE ------------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public_key: Any) -> str:
    """sha256 of the DER SubjectPublicKeyInfo: names the lab key in the envelope."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _load_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise BundleError(f"{path}: key file not found") from None
    except TypeError:
        raise BundleError(
            f"{path}: the key is encrypted; give an unencrypted PEM (openssl pkey -in K -out K2)"
        ) from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a PEM private key ({exc})") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise BundleError(f"{path}: the key must be ECDSA P-256 or Ed25519")


def _load_public_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise BundleError(f"{path}: public key file not found") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a PEM public key ({exc})") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise BundleError(f"{path}: the key must be ECDSA P-256 or Ed25519")


def _sign(key: Any, message: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return bytes(key.sign(message, ec.ECDSA(hashes.SHA256())))  # DER (r, s)
    return bytes(key.sign(message))


def _signature_valid(key: Any, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _algorithm(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    return "ecdsa-p256-sha256" if isinstance(key, ec.EllipticCurvePublicKey) else "ed25519"


def envelope_bytes(envelope: dict[str, Any]) -> bytes:
    """The one serialisation of an envelope a bundle may hold."""
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode("utf-8")


# -- what the run certifies --------------------------------------------------------------


def incomplete_reasons(document: dict[str, Any], campaign: dict[str, Any] | None) -> list[str]:
    """Why the run is not a certification (empty when it is)."""
    reasons = []
    cases = document["cases"]
    unwaived = [c["id"] for c in cases if c["verdict"] == "fail" and not c.get("waived")]
    unexpected = [
        c["id"] for c in cases if (c.get("waiver") or {}).get("status") == "unexpected pass"
    ]
    for label, ids in (
        ("unwaived failure", unwaived),
        ("unexpected pass", unexpected),
        ("error", [c["id"] for c in cases if c["verdict"] == "error"]),
        ("inconclusive case", [c["id"] for c in cases if c["verdict"] == "inconc"]),
    ):
        if ids:
            reasons.append(f"{len(ids)} {label}{'s' * (len(ids) > 1)} ({_ids(ids)})")
    if campaign is None:
        reasons.append("campaign.json is missing: cannot tell that every selected case ran")
    else:
        ran = {c["id"] for c in cases}
        missing = [i for i in campaign.get("selected", []) if i not in ran]
        if missing:
            reasons.append(f"{len(missing)} selected case(s) did not run ({_ids(missing)})")
    if not [c for c in cases if c["verdict"] == "pass" or c.get("waived")]:
        reasons.append("no applicable case ran")
    if document.get("tool_version") != __version__:
        reasons.append(
            f"results.json is from kms-conformance {document.get('tool_version')}, "
            f"this is {__version__}: the catalogue hash would not be the run's"
        )
    return reasons


def _ids(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def catalogue_digest() -> dict[str, Any]:
    """sha256 over the catalogue files (names and bytes, sorted) and the case count."""
    from conformance.catalogue.cases import catalogue_dir, load_catalogue

    directory = catalogue_dir()
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".json"))
    for path in files:
        data = path.read_bytes()
        digest.update(b"%s\0%d\0" % (path.name.encode(), len(data)) + data)
    return {
        "version": __version__,
        "sha256": digest.hexdigest(),
        "files": [p.name for p in files],
        "cases": len(load_catalogue()),
    }


def environment() -> dict[str, Any]:
    """Tool and library versions, OpenSSL as cryptography's backend reports it."""
    import cryptography
    import jinja2
    import lxml.etree
    from cryptography.hazmat.backends.openssl.backend import backend

    versions = {
        "kms-conformance": __version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "lxml": ".".join(map(str, lxml.etree.LXML_VERSION)),
        "libxml2": ".".join(map(str, lxml.etree.LIBXML_VERSION)),
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
        "jinja2": jinja2.__version__,
    }
    try:
        import weasyprint

        versions["weasyprint"] = weasyprint.__version__
    except (ImportError, OSError):
        pass
    return {"tools": versions, "catalogue": catalogue_digest()}


def target_description(document: dict[str, Any]) -> dict[str, Any]:
    """The target as the run recorded it (redacted in results.json): no secret is in it."""
    target = dict(document.get("target", {}))
    return {"profile": document.get("profile"), "pics": target.pop("pics", {}), "target": target}


# -- bundle -------------------------------------------------------------------------------


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not readable JSON: {exc}") from None


def collect_files(out_dir: Path) -> dict[str, bytes]:
    """The run's files by bundle name (evidence/ included); report.pdf must exist."""
    files: dict[str, bytes] = {}
    for name in RUN_FILES:
        path = out_dir / name
        if not path.is_file():
            raise BundleError(f"{path}: missing (is {out_dir} the output folder of a run?)")
        files[name] = path.read_bytes()
    for name in OPTIONAL_FILES:
        if (out_dir / name).is_file():
            files[name] = (out_dir / name).read_bytes()
    evidence = out_dir / "evidence"
    if evidence.is_dir():
        for path in sorted(evidence.rglob("*")):
            if path.is_file():
                files[path.relative_to(out_dir).as_posix()] = path.read_bytes()
    return files


def make_bundle(
    out_dir: Path,
    key_file: Path,
    output: Path,
    allow_incomplete: bool = False,
    lab_file: Path | None = None,
) -> dict[str, Any]:
    """Write the bundle; returns its statement. Raises BundleError."""
    from conformance.report.pdf import PdfError, read_run

    try:
        document, _ = read_run(out_dir)  # validated against results.schema.json
    except PdfError as exc:
        raise BundleError(str(exc)) from None
    campaign = _json_file(out_dir / "campaign.json")
    reasons = incomplete_reasons(document, campaign)
    if reasons and not allow_incomplete:
        raise BundleError(
            "not a certification: "
            + "; ".join(reasons)
            + " (--allow-incomplete bundles it anyway)",
            refused=True,
        )
    key = _load_private_key(key_file)
    if lab_file is not None or not (out_dir / "report.pdf").is_file():
        from conformance.report.pdf import write_pdf

        try:
            write_pdf(out_dir, lab_file)
        except PdfError as exc:
            raise BundleError(f"the PDF report: {exc}") from None
    files = collect_files(out_dir)
    files["target.json"] = _dump(target_description(document))
    env = environment()
    files["environment.json"] = _dump(env)
    statement = _statement(
        document, campaign=campaign, files=files, env=env, reasons=reasons, lab_file=lab_file
    )
    payload = _dump(statement)
    envelope = {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [
            {
                "keyid": key_id(key.public_key()),
                "sig": base64.b64encode(_sign(key, pae(PAYLOAD_TYPE, payload))).decode("ascii"),
            }
        ],
    }
    files[ENVELOPE] = envelope_bytes(envelope)
    data = canonical_zip(files.items())
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(output)
    return statement


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _statement(
    document: dict[str, Any],
    *,
    campaign: dict[str, Any] | None,
    files: dict[str, bytes],
    env: dict[str, Any],
    reasons: list[str],
    lab_file: Path | None,
) -> dict[str, Any]:
    from conformance.report.html import verdict_banner

    target = document.get("target", {})
    summary = document.get("summary", {})
    certification = not reasons
    where = target.get("label") or target.get("base_url", "")
    _state, verdict = verdict_banner(summary)
    if certification:
        text = (
            f"Certification: the KMS at {target.get('base_url')} ({where}) was found "
            f"{verdict.lower()} under profile {document.get('profile')} by "
            f"kms-conformance {document.get('tool_version')} on {document.get('started')}"
        )
    else:
        text = "NOT a certification: " + "; ".join(reasons)
    predicate: dict[str, Any] = {
        "certification": certification,
        "statement": text,
        "not_a_certification_because": reasons,
        "verdict": verdict,
        "kms": {
            "base_url": target.get("base_url"),
            "label": target.get("label", ""),
            "profile": document.get("profile"),
            "pics": target.get("pics", {}),
        },
        "run": {"started": document.get("started"), "duration_s": document.get("duration_s")},
        "summary": summary,
        "campaign": campaign,
        "waivers": document.get("waivers"),
        "catalogue": {k: env["catalogue"][k] for k in ("version", "sha256", "cases")},
        "tools": env["tools"],
        "bundled": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if lab_file is not None:
        from conformance.report.pdf import load_lab

        predicate["lab"] = load_lab(lab_file)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}
            for name, data in sorted(files.items())
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def canonical_zip(entries: Iterable[tuple[str, bytes]]) -> bytes:
    """Entries sorted by name, stored (no compression), fixed time and mode, no comment."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = _ZIP_MODE
            info.create_system = 3
            archive.writestr(info, data)
    return buffer.getvalue()


# -- verify -------------------------------------------------------------------------------


def verify_bundle(bundle: Path, pubkey_file: Path) -> dict[str, Any]:
    """Check the bundle; returns its statement, or raises VerifyFailed (one line)."""
    public_key = _load_public_key(pubkey_file)
    try:
        raw = bundle.read_bytes()
    except OSError as exc:
        raise BundleError(f"{bundle}: cannot read: {exc.strerror or exc}") from None
    entries = _read_zip(raw)
    if ENVELOPE not in entries:
        raise VerifyFailed(f"no {ENVELOPE} in the bundle")
    if canonical_zip(entries.items()) != raw:
        raise VerifyFailed(
            "the zip is not in the form bundle writes (a header, order or trailing byte changed)"
        )
    envelope = _parse_envelope(entries[ENVELOPE])
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
    except ValueError:
        raise VerifyFailed(f"{ENVELOPE}: the payload is not base64") from None
    signatures = envelope["signatures"]
    own = key_id(public_key)
    if [s.get("keyid") for s in signatures] != [own]:
        raise VerifyFailed(f"the envelope is not signed by this key alone ({own})")
    try:
        signature = base64.b64decode(signatures[0]["sig"], validate=True)
    except (ValueError, TypeError):
        raise VerifyFailed("the signature is not base64") from None
    if not _signature_valid(public_key, signature, pae(envelope["payloadType"], payload)):
        raise VerifyFailed(f"the signature does not verify with {pubkey_file}")
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VerifyFailed("the signed payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise VerifyFailed(f"the payload is not an in-toto Statement ({STATEMENT_TYPE})")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise VerifyFailed(f"predicateType is not {PREDICATE_TYPE}")
    _check_subjects(statement, entries)
    return statement


def _read_zip(raw: bytes) -> dict[str, bytes]:
    entries: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for info in archive.infolist():
                if info.filename in entries:
                    raise VerifyFailed(f"{info.filename}: twice in the zip")
                entries[info.filename] = archive.read(info)  # checks the CRC
    except VerifyFailed:
        raise
    except Exception as exc:  # zipfile raises many kinds for a damaged archive
        raise VerifyFailed(f"not a valid zip: {exc}") from None
    return entries


def _parse_envelope(data: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VerifyFailed(f"{ENVELOPE}: not JSON") from None
    if (
        not isinstance(envelope, dict)
        or set(envelope) != {"payload", "payloadType", "signatures"}
        or not isinstance(envelope["payload"], str)
        or envelope["payloadType"] != PAYLOAD_TYPE
        or not isinstance(envelope["signatures"], list)
        or not all(isinstance(s, dict) for s in envelope["signatures"])
    ):
        raise VerifyFailed(f"{ENVELOPE}: not a DSSE envelope of {PAYLOAD_TYPE}")
    if envelope_bytes(envelope) != data:
        raise VerifyFailed(f"{ENVELOPE}: changed (not in the form bundle writes)")
    return envelope


def _check_subjects(statement: dict[str, Any], entries: dict[str, bytes]) -> None:
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        raise VerifyFailed("the statement has no subject list")
    listed: dict[str, str] = {}
    for subject in subjects:
        try:
            listed[subject["name"]] = subject["digest"]["sha256"]
        except (KeyError, TypeError):
            raise VerifyFailed("a subject without name or sha256 digest") from None
    present = set(entries) - {ENVELOPE}
    missing = sorted(set(listed) - present)
    if missing:
        raise VerifyFailed(f"{missing[0]}: listed in the manifest but missing from the bundle")
    extra = sorted(present - set(listed))
    if extra:
        raise VerifyFailed(f"{extra[0]}: in the bundle but not in the signed manifest")
    for name in sorted(listed):
        if hashlib.sha256(entries[name]).hexdigest() != listed[name]:
            raise VerifyFailed(f"{name}: SHA-256 digest does not match the signed manifest")


def describe(statement: dict[str, Any]) -> list[str]:
    """What a verified bundle certifies, for the terminal."""
    p = statement["predicate"]
    summary = p.get("summary", {})
    order = ("pass", "fail", "waived", "unexpected_pass", "inconc", "n/a", "error", "warnings")
    counts = ", ".join(f"{summary[k]} {k}" for k in order if k in summary)
    catalogue = p.get("catalogue", {})
    kms = p.get("kms", {})
    return [
        p.get("statement", ""),
        f"  KMS: {kms.get('base_url')} ({kms.get('label') or 'no label'}), "
        f"profile {kms.get('profile')}",
        f"  verdict: {p.get('verdict')}: {counts}",
        f"  waivers: {len(p.get('waivers') or [])}; catalogue {catalogue.get('version')} "
        f"sha256:{catalogue.get('sha256')} ({catalogue.get('cases')} cases)",
        f"  tools: {', '.join(f'{k} {v}' for k, v in p.get('tools', {}).items())}",
        f"  run started {p.get('run', {}).get('started')}; bundled {p.get('bundled')}",
    ]


# -- command entry points -----------------------------------------------------------------


def make_main(out_dir: str, key: str, output: str, allow_incomplete: bool, lab: str | None) -> int:
    try:
        statement = make_bundle(
            Path(out_dir), Path(key), Path(output), allow_incomplete, Path(lab) if lab else None
        )
    except BundleError as exc:
        print(f"kms-conformance bundle: {exc}", file=sys.stderr)
        return EXIT_REFUSED if exc.refused else EXIT_USAGE
    predicate = statement["predicate"]
    kind = "certification" if predicate["certification"] else "NOT a certification"
    print(f"wrote {output} ({kind}; {len(statement['subject'])} files signed)")
    return EXIT_OK


def verify_main(bundle: str, pubkey: str) -> int:
    try:
        statement = verify_bundle(Path(bundle), Path(pubkey))
    except BundleError as exc:
        print(f"kms-conformance verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VerifyFailed as exc:
        print(f"kms-conformance verify: {bundle}: FAILED: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:  # a hostile bundle must give one line, never a traceback
        reason = f"{type(exc).__name__}: {exc}"
        print(f"kms-conformance verify: {bundle}: FAILED: {reason}", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"{bundle}: verified: signed by {_algorithm(_load_public_key(Path(pubkey)))} key "
        f"{key_id(_load_public_key(Path(pubkey)))}; {len(statement['subject'])} files, "
        "every SHA-256 digest matches"
    )
    for line in describe(statement):
        print(line)
    return EXIT_OK
