"""Throwaway certificates for local meshes and tests: a CA, and node certificates it signs (``cryptography``).

``reactmesh up --tls`` and the test suites make a fresh CA in a data directory and one certificate per node;
production deployments bring their own (cert-manager, a corporate CA) and never import this module. Keys are
ECDSA P-256; every certificate carries the subject alternative names a gRPC client checks (DNS names and IP
addresses, ``localhost`` and ``127.0.0.1`` by default) and is usable for both TLS server and client auth, since
a node both serves and dials. Files are PEM; keys are written owner-readable only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertFiles:
    """Paths of one node's PEM files: its certificate (chain), its private key, and the CA that signs peers."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (a reader never sees half a file), mode 0600 for keys."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class CertificateAuthority:
    """A self-signed CA held in memory; ``issue`` signs node certificates with it."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def create(cls, name: str = "reactmesh dev CA", *, days: int = 30) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, cert_file: str | Path, key_file: str | Path) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file}: expected an EC private key")
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, hosts: tuple[str, ...] = DEFAULT_HOSTS, *, days: int = 30) -> tuple[bytes, bytes]:
        """A new key and a certificate for ``common_name`` valid for ``hosts`` (DNS names or IPs): (cert, key) PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def write(
        self, directory: str | Path, cert_name: str = "ca.pem", key_name: str = "ca-key.pem"
    ) -> tuple[Path, Path]:
        """Write the CA's certificate and key (``ca.pem``, ``ca-key.pem``) into ``directory``; returns their paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        _write(d / cert_name, self.cert_pem)
        _write(d / key_name, _key_pem(self.key), private=True)
        return d / cert_name, d / key_name

    def write_node(
        self, directory: str | Path, name: str, hosts: tuple[str, ...] = DEFAULT_HOSTS, *, days: int = 30
    ) -> CertFiles:
        """Issue a certificate for ``name`` and write ``<name>.pem``, ``<name>-key.pem`` and ``ca.pem``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cert, key = self.issue(name, hosts, days=days)
        files = CertFiles(d / f"{name}.pem", d / f"{name}-key.pem", d / "ca.pem")
        # The key first: a reloader that sees the new certificate also finds its key.
        _write(files.key_file, key, private=True)
        _write(files.cert_file, cert)
        if not files.ca_file.exists() or files.ca_file.read_bytes() != self.cert_pem:
            _write(files.ca_file, self.cert_pem)
        return files


def write_tls_secret(
    ca: CertificateAuthority, directory: str | Path, common_name: str, hosts: tuple[str, ...], *, days: int = 30
) -> CertFiles:
    """Issue a certificate for ``hosts`` and write ``tls.crt``, ``tls.key`` and ``ca.crt`` into ``directory``: the
    key names of a ``kubernetes.io/tls`` Secret with the CA that cert-manager adds, as k8s/ mounts them."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = ca.issue(common_name, hosts, days=days)
    files = CertFiles(d / "tls.crt", d / "tls.key", d / "ca.crt")
    _write(files.key_file, key, private=True)
    _write(files.cert_file, cert)
    _write(files.ca_file, ca.cert_pem)
    return files
