"""Certificates made for one test: a CA and a loopback server certificate it issued.

Built with the suite's one PKI helper (refkms.tls), so that no test carries a certificate
builder of its own.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from refkms.tls import issue_ca, issue_certificate, write_ca_file, write_certificate_files

# A test's certificates need only outlive the test.
TEST_VALIDITY = timedelta(days=2)


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


def make_pki(directory: Path, ca_name: str, *, dns: str | None = None) -> Pki:
    """A CA called ``ca_name`` and a server certificate for 127.0.0.1 (or for ``dns`` only)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = issue_ca(ca_name, validity=TEST_VALIDITY)
    names: list[x509.GeneralName] = (
        [x509.DNSName(dns)]
        if dns
        else [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    server = issue_certificate(dns or "localhost", ca, names=names, validity=TEST_VALIDITY)
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    write_ca_file(pki.ca_file, ca)
    write_certificate_files(pki.cert_file, pki.key_file, server)
    return pki
