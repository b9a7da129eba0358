"""Authentication per target and per user (issue 11 item 7), over real loopback HTTPS.

* Identity header: a small trusted proxy in front of the reference KMS admits a request
  by its ``X-3GPP-Asserted-Identity`` header (and adds the token the KMS wants), as a
  deployment's proxy would; the target file has no Bearer tokens, so the normal cases
  pass through it and the token cases are n/a with the reason.
* Fixed headers, plain and secret: sent on the wire, secret values redacted from the
  evidence, repro.sh takes them from the environment.
* Client certificates: a server that requires one sees each user's own certificate; a
  passphrase-protected key is opened with the passphrase from the environment.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from probe_support.kms import ServedKms, serving_kms
from probe_support.servers import fixed, http_response, raw_server
from probe_support.tls import TEST_VALIDITY, make_pki

from conformance.catalogue.cases import load_catalogue
from conformance.probe.sender import Probe
from conformance.profiles import get_profile
from conformance.run.engine import Runner
from conformance.target.file import TargetFileError, load_target
from conformance.verdicts.outcomes import Verdict
from refkms.tls import issue_ca, issue_certificate, write_ca_file, write_certificate_files

IDENTITY = "X-3GPP-Asserted-Identity"
BY_ID = {case.id: case for case in load_catalogue()}


# -- a trusted proxy that knows users by an identity header ------------------------------


@contextmanager
def identity_proxy(kms: ServedKms, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """HTTPS on loopback: forwards to the KMS with the token of the user the identity
    header names; a request without a known identity gets 401."""
    tokens = {u.uri: u.token.text() for u in kms.target.users if u.token is not None}
    upstream = httpx.Client(
        verify=ssl.create_default_context(cafile=str(kms.target.target.ca_file)), timeout=10
    )
    upstream_base = kms.target.target.base_url.split("/keymanagement")[0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            who = self.headers.get(IDENTITY)
            if who not in tokens or self.headers.get("Authorization"):
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {"Authorization": f"Bearer {tokens[who]}", "Accept": "application/xml"}
            if body:
                headers["Content-Type"] = self.headers.get("Content-Type", "application/xml")
            answer = upstream.post(upstream_base + self.path, content=body, headers=headers)
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "connection", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: object) -> None:
            pass

    pki = make_pki(tmp_path / "proxy-pki", "Proxy CA")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = pki.server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", pki.ca_file
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()


def _header_target(kms: ServedKms, origin: str, ca_file: Path, tmp_path: Path) -> Path:
    """The KMS's own target file, pointed at the proxy, with its Bearer tokens removed."""
    text = kms.target_file.read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("token = ")]
    text = "\n".join(lines) + "\n"
    path = tmp_path / "header-target.toml"
    base = kms.target.target.base_url
    text = text.replace(base.split("/keymanagement")[0], origin)
    text = text.replace(str(kms.target.target.ca_file), str(ca_file))
    text = text.replace("[target]\n", f'[target]\nidentity_header = "{IDENTITY}"\n', 1)
    path.write_text(_without_table(text, "tokens"))
    return path


def _without_table(text: str, name: str) -> str:
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line.strip() == f"[{name}]"
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def test_identity_header_target_runs_cases_and_token_cases_are_na(tmp_path: Path) -> None:
    with serving_kms(tmp_path / "kms") as kms, identity_proxy(kms, tmp_path) as (origin, ca):
        target = load_target(_header_target(kms, origin, ca, tmp_path))
        assert not target.bearer and target.target.identity_header == IDENTITY
        runner = Runner(target, get_profile(target.profile.release))
        try:
            ids = (
                "INIT-CERT-FIELDS-001",
                "KEYPROV-UID-001",
                "ERR-AUTHZ-OTHERUSER-001",
                "ERR-AUTH-NOTOKEN-001",
                "ERR-AUTH-EXPIRED-001",
                "ERR-AUTHZ-TOKEN-001",
            )
            results = {i: runner.run_case(BY_ID[i]) for i in ids}
        finally:
            runner.close()
    for case_id in ("INIT-CERT-FIELDS-001", "KEYPROV-UID-001", "ERR-AUTHZ-OTHERUSER-001"):
        assert results[case_id].verdict is Verdict.PASS, results[case_id].reason
    notoken = results["ERR-AUTH-NOTOKEN-001"]
    assert notoken.verdict is Verdict.NA
    assert f"needs Bearer tokens (the target identifies users by identity header {IDENTITY}" in (
        notoken.reason
    )
    assert results["ERR-AUTH-EXPIRED-001"].verdict is Verdict.NA
    assert "needs [tokens] expired" in results["ERR-AUTH-EXPIRED-001"].reason
    # Another user's credential is the other user's identity header: refused, no keys.
    assert results["ERR-AUTHZ-TOKEN-001"].verdict is Verdict.PASS, results[
        "ERR-AUTHZ-TOKEN-001"
    ].reason


def test_without_identity_header_the_proxy_refuses(tmp_path: Path) -> None:
    """The proxy is real: the same request without the header is refused (401)."""
    with serving_kms(tmp_path / "kms") as kms, identity_proxy(kms, tmp_path) as (origin, ca):
        answer = httpx.post(
            f"{origin}/keymanagement/identity/v1/init",
            verify=ssl.create_default_context(cafile=str(ca)),
        )
        assert answer.status_code == 401
        good = httpx.post(
            f"{origin}/keymanagement/identity/v1/init",
            verify=ssl.create_default_context(cafile=str(ca)),
            headers={IDENTITY: kms.target.users[0].uri},
        )
        assert good.status_code == 200 and b"KmsInit" in good.content


# -- fixed headers, plain and secret ------------------------------------------------------

HEADERS_TARGET = """\
[target]
base_url = "{base_url}"
ca_file = "{ca_file}"
timeout_s = 3
identity_header = "X-3GPP-Asserted-Identity"

[target.headers]
X-Tenant = "tenant-one"
X-Api-Key = {{ value_env = "KMS_TEST_API_KEY" }}

[[users]]
uri = "sip:alice@example.org"
identity = "alice-at-proxy"
headers = {{ X-Device = "device-7", X-Device-Secret = {{ value = "{device_secret}" }} }}
"""
API_KEY = "api-key-0123456789abcdef-not-for-reports"
DEVICE_SECRET = "device-secret-fedcba9876543210"


def test_fixed_headers_are_sent_and_secret_ones_redacted(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "Headers CA")
    answer = http_response("500 Internal Server Error", b"")
    with raw_server(fixed(answer), pki.server_context()) as server:
        target = tmp_path / "target.toml"
        target.write_text(
            HEADERS_TARGET.format(
                base_url=server.https_base_url, ca_file=pki.ca_file, device_secret=DEVICE_SECRET
            )
        )
        out = tmp_path / "out"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "conformance.run.cli",
                "run",
                "--target",
                str(target),
                "--output",
                str(out),
                "--cases",
                "INIT-CERT-FIELDS-001",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={**_env(), "KMS_TEST_API_KEY": API_KEY},
        )
        heads = [r.decode("latin-1") for r in server.requests]
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert heads, "nothing reached the server"
    for head in heads:
        lowered = head.lower()
        assert "x-3gpp-asserted-identity: alice-at-proxy" in lowered
        assert "x-tenant: tenant-one" in lowered and "x-device: device-7" in lowered
        assert f"x-api-key: {API_KEY}".lower() in lowered
        assert "authorization:" not in lowered
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert API_KEY.encode() not in data and DEVICE_SECRET.encode() not in data, path
    [request] = list((out / "evidence" / "INIT-CERT-FIELDS-001").glob("*/request.txt"))
    assert "X-Api-Key: REDACTED-HEADER-TARGET-X-API-KEY-sha256-" in request.read_text()
    repro = (out / "evidence" / "INIT-CERT-FIELDS-001" / "repro.sh").read_text()
    assert '-H "X-Api-Key: ${KMS_HEADER_X_API_KEY:?set KMS_HEADER_X_API_KEY}"' in repro
    assert '-H "X-Device-Secret: ${KMS_HEADER_X_DEVICE_SECRET:?' in repro
    assert "-H 'X-Tenant: tenant-one'" in repro


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("KMS_TEST_")}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ('X-Tenant = "tenant-one"', r'"X Tenant" = "a"'),
        ('X-Tenant = "tenant-one"', 'Authorization = "Bearer x"'),
        ('X-Tenant = "tenant-one"', "X-Tenant = 5"),
        ('X-Tenant = "tenant-one"', 'X-Tenant = { value_env = "KMS_TEST_UNSET" }'),
    ],
)
def test_bad_header_entries_name_the_key(change: str, says: str, tmp_path: Path) -> None:
    target = tmp_path / "target.toml"
    text = HEADERS_TARGET.format(
        base_url="https://127.0.0.1:1/kms", ca_file=__file__, device_secret="x"
    )
    target.write_text(text.replace(change, says))
    with pytest.raises(TargetFileError) as caught:
        load_target(target, environ={"KMS_TEST_API_KEY": "k"})
    message = str(caught.value)
    assert "target.headers" in message, message
    assert "\n" not in message


# -- client certificates -----------------------------------------------------------------


def _client_pki(folder: Path) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """A client CA and a certificate + key for alice (plain key) and bob (encrypted key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = issue_ca("Client CA", validity=TEST_VALIDITY)
    ca_file = folder / "client-ca.pem"
    write_ca_file(ca_file, ca)
    made = {}
    for name, passphrase in (("alice", None), ("bob", b"bob-key-passphrase")):
        client = issue_certificate(
            name, ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH, validity=TEST_VALIDITY
        )
        cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
        write_certificate_files(cert_file, key_file, client, passphrase=passphrase)
        made[name] = (cert_file, key_file)
    return ca_file, made


def _who_am_i(conn: ssl.SSLSocket, stop: threading.Event) -> None:
    """Answers with the common name of the client certificate it was shown."""
    peer = conn.getpeercert() or {}
    names = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
    conn.sendall(http_response("200 OK", json.dumps(names).encode()))


CERT_TARGET = """\
[target]
base_url = "{base_url}"
ca_file = "{ca_file}"
timeout_s = 3

[[users]]
uri = "sip:alice@example.org"
client_cert = "{alice_cert}"
client_key = "{alice_key}"

[[users]]
uri = "sip:bob@example.org"
client_cert = "{bob_cert}"
client_key = "{bob_key}"
client_key_passphrase_env = "KMS_TEST_BOB_PASSPHRASE"

[[users]]
uri = "sip:carol@example.org"
token = "carol-has-a-token-only"
"""


def test_each_user_shows_its_own_client_certificate(tmp_path: Path) -> None:
    server_pki = make_pki(tmp_path / "server-pki", "Server CA")
    client_ca, clients = _client_pki(tmp_path / "client-pki")
    context = server_pki.server_context()
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(client_ca))
    with raw_server(_who_am_i, context) as server:  # type: ignore[arg-type]
        path = tmp_path / "target.toml"
        path.write_text(
            CERT_TARGET.format(
                base_url=server.https_base_url,
                ca_file=server_pki.ca_file,
                alice_cert=clients["alice"][0],
                alice_key=clients["alice"][1],
                bob_cert=clients["bob"][0],
                bob_key=clients["bob"][1],
            )
        )
        target = load_target(path, environ={"KMS_TEST_BOB_PASSPHRASE": "bob-key-passphrase"})
        with Probe(target, get_profile(target.profile.release)) as probe:
            alice = probe.send({"request": "init"}, "alice")
            bob = probe.send({"request": "init", "user": 2}, "bob")
            as_bob = probe.send({"request": "init", "token": "other_user"}, "alice-as-bob")
            carol = probe.send({"request": "init", "user": 3}, "carol")
    assert alice.status == 200 and json.loads(alice.body) == ["alice"], alice.error
    assert bob.status == 200 and json.loads(bob.body) == ["bob"], bob.error
    assert json.loads(as_bob.body) == ["bob"], "another user's credential is its certificate"
    # carol has no certificate: the server that requires one refuses the handshake.
    assert carol.status is None and carol.error_kind in ("tls", "protocol"), carol.error
    assert "Authorization" not in dict(alice.request.headers)


def test_a_wrong_key_passphrase_is_a_one_line_tls_error(tmp_path: Path) -> None:
    server_pki = make_pki(tmp_path / "server-pki", "Server CA")
    _client_ca, clients = _client_pki(tmp_path / "client-pki")
    path = tmp_path / "target.toml"
    path.write_text(
        CERT_TARGET.format(
            base_url="https://127.0.0.1:9/keymanagement/identity/v1",
            ca_file=server_pki.ca_file,
            alice_cert=clients["alice"][0],
            alice_key=clients["alice"][1],
            bob_cert=clients["bob"][0],
            bob_key=clients["bob"][1],
        )
    )
    target = load_target(path, environ={"KMS_TEST_BOB_PASSPHRASE": "wrong"})
    with Probe(target, get_profile(target.profile.release)) as probe:
        bob = probe.send({"request": "init", "user": 2}, "bob")
    assert bob.error_kind == "tls" and "cannot load the client certificate" in (bob.error or "")
    assert "wrong" not in (bob.error or "").replace("wrong password", "")


def test_a_missing_passphrase_variable_is_a_target_file_error(tmp_path: Path) -> None:
    server_pki = make_pki(tmp_path / "server-pki", "Server CA")
    _client_ca, clients = _client_pki(tmp_path / "client-pki")
    path = tmp_path / "target.toml"
    path.write_text(
        CERT_TARGET.format(
            base_url="https://127.0.0.1:9/kms",
            ca_file=server_pki.ca_file,
            alice_cert=clients["alice"][0],
            alice_key=clients["alice"][1],
            bob_cert=clients["bob"][0],
            bob_key=clients["bob"][1],
        )
    )
    with pytest.raises(TargetFileError) as caught:
        load_target(path, environ={})
    assert (
        "users[1].client_key_passphrase_env: environment variable KMS_TEST_BOB_PASSPHRASE"
        in str(caught.value)
    )


# -- the template and serve's header -------------------------------------------------------


def test_target_template_is_a_loadable_commented_minimal_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", "target", "--template"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "REQUIRED" in text and "base_url" in text and "identity_header" in text
    for pics in (
        "cert",
        "lookup",
        "redirect",
        "encryption",
        "signing",
        "ink",
        "request_signing",
        "certcache_incremental",
        "tk_ik_delivery",
    ):
        assert f"# {pics} = " in text, pics
    path = tmp_path / "kms.toml"
    written = subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", "target", "--template", "-o", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert written.returncode == 0 and path.read_text() == text
    target = load_target(path, environ={"KMS_TOKEN": "t"})
    assert target.users[0].uri == "sip:alice@example.org" and target.bearer
    again = subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", "target", "--template", "-o", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert again.returncode == 2 and "not overwritten" in again.stderr


def test_serve_target_file_says_what_may_be_dropped(tmp_path: Path) -> None:
    with serving_kms(tmp_path / "kms") as kms:
        text = kms.target_file.read_text()
    assert text.startswith("# target.toml written by the reference KMS")
    assert "Optional, may be" in text and "kms-conformance target --template" in text
