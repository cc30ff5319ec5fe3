"""A private CA and a server certificate signed by it, as PEM files, for TLS tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devtools.certs import CertificateAuthority

__all__ = ["ServerCertificate", "make_server_certificate"]


@dataclass(frozen=True)
class ServerCertificate:
    """PEM files: the CA to trust, and the server's certificate and key."""

    ca_file: Path
    certificate_file: Path
    key_file: Path


def make_server_certificate(directory: Path, server_name: str) -> ServerCertificate:
    """A new CA, and a certificate for the DNS name ``server_name`` (only) signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority("meshchat test CA")
    leaf = ca.issue(server_name, [server_name])
    files = ServerCertificate(
        directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    )
    files.ca_file.write_bytes(ca.pem)
    files.certificate_file.write_bytes(leaf.cert_pem)
    files.key_file.write_bytes(leaf.key_pem)
    files.key_file.chmod(0o600)
    return files
