"""TLS material of the reference KMS: a CA of its own and a loopback server certificate.

Made once per state directory with ``cryptography`` so that a launcher can verify the
server with the CA file written into target.toml (DESIGN.md section 4).

The builder below (``issue_ca``, ``issue_certificate``, ``write_certificate_files``) is
also the one PKI helper of the test suite: every test that needs a CA, a server or a
client certificate makes it here rather than with a copy of its own (issue 17).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from refkms.files import write_atomically

# TLS validity follows the wall clock, never the KMS's (possibly fixed) protocol clock.
_VALIDITY = timedelta(days=825)
# Backdated so that a peer whose clock is a little behind still accepts the certificate.
_BACKDATE = timedelta(minutes=5)

Issued = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
"""A certificate and the private key of its subject."""


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def loopback_names() -> list[x509.GeneralName]:
    """The names a loopback server answers to: localhost, 127.0.0.1 and ::1."""
    return [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]


def issue_ca(common_name: str, *, validity: timedelta = _VALIDITY) -> Issued:
    """A self-signed CA that may issue end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    certificate = (
        _builder(name, name, key.public_key(), validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def issue_certificate(
    common_name: str,
    issuer: Issued | None,
    *,
    names: Sequence[x509.GeneralName] = (),
    usage: ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
    validity: timedelta = _VALIDITY,
) -> Issued:
    """An end-entity certificate for ``names`` signed by ``issuer``, or self-signed without one."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    builder = _builder(
        subject, issuer[0].subject if issuer else subject, key.public_key(), validity
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(issuer[1] if issuer else key, hashes.SHA256())
    )
    return certificate, key


def write_certificate_files(
    cert_file: Path,
    key_file: Path,
    issued: Issued,
    *,
    chain: Sequence[x509.Certificate] = (),
    passphrase: bytes | None = None,
) -> None:
    """Write the certificate (followed by ``chain``) and its key, encrypted with ``passphrase``."""
    certificate, key = issued
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    write_atomically(
        key_file,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ),
    )
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (certificate, *chain))
    write_atomically(cert_file, pem)


def write_ca_file(ca_file: Path, ca: Issued) -> None:
    """Write the CA certificate (never its key) for a client to trust."""
    write_atomically(ca_file, ca[0].public_bytes(serialization.Encoding.PEM))


def ensure_tls_files(directory: Path) -> TlsFiles:
    """Return the CA and server files in ``directory``, making them on first use."""
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if all(path.exists() for path in (files.ca_file, files.cert_file, files.key_file)):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    ca = issue_ca("kms-conformance reference KMS CA")
    server = issue_certificate("localhost", ca, names=loopback_names())
    write_certificate_files(files.cert_file, files.key_file, server)
    write_ca_file(files.ca_file, ca)
    return files


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    validity: timedelta,
) -> x509.CertificateBuilder:
    now = datetime.now(UTC) - _BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + validity)
    )
