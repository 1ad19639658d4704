"""``reactmesh certs``: the files of Secret reactmesh-tls, every region's signed by one reused CA."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from reactmesh.region_node.cli.main import main
from reactmesh.region_node.tls import PemFiles, TLSConfig


def sans(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [*names.get_values_for_type(x509.DNSName), *map(str, names.get_values_for_type(x509.IPAddress))]


def test_certs_writes_secret_files_signed_by_one_reused_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    names = ["agg-0.agg", "bcast.reactmesh-a.svc.cluster.local", "10.0.0.7"]
    assert main(["certs", "--ca-dir", str(ca), "--out", str(tmp_path / "a"), *(f"--name={n}" for n in names)]) == 0
    assert main(["certs", "--ca-dir", str(ca), "--out", str(tmp_path / "b"), "--name=agg-0.agg"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    shared = (ca / "ca.crt").read_bytes()
    assert (tmp_path / "a" / "ca.crt").read_bytes() == (tmp_path / "b" / "ca.crt").read_bytes() == shared
    assert (tmp_path / "a" / "tls.key").stat().st_mode & 0o077 == 0
    assert (ca / "ca.key").stat().st_mode & 0o077 == 0
    assert sans(tmp_path / "a" / "tls.crt") == ["agg-0.agg", "bcast.reactmesh-a.svc.cluster.local", "10.0.0.7"]
    ipaddress.ip_address(sans(tmp_path / "a" / "tls.crt")[-1])
    # What a node's [tls] section accepts: the key matches the certificate, and the CA signed it.
    d = tmp_path / "b"
    PemFiles(TLSConfig(str(d / "tls.crt"), str(d / "tls.key"), str(d / "ca.crt")))


def test_certs_refuses_a_half_present_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "ca.crt").write_text("x")
    assert main(["certs", "--ca-dir", str(tmp_path / "ca"), "--out", str(tmp_path / "o"), "--name=x"]) == 2
    assert "only one of" in capsys.readouterr().err
