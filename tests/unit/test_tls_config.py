"""The [tls] section: validated at load, errors name the field; a broadcaster with mTLS needs a peer port."""

from __future__ import annotations

from typing import Any

import pytest

from reactmesh.merge.errors import ConfigError
from reactmesh.region_node.config import from_mapping

TLS = {"cert_file": "/t/node.pem", "key_file": "/t/node-key.pem", "ca_file": "/t/ca.pem"}


def config(tls: dict[str, Any], **broadcaster: Any) -> dict[str, Any]:
    return {
        "region": "a",
        "broadcaster": {"listen": "0.0.0.0:7300", **broadcaster},
        "tls": tls,
    }


def test_tls_section_loads_with_mutual_tls_by_default() -> None:
    cfg = from_mapping(config(TLS, peer_listen="0.0.0.0:7301"), env={})
    assert cfg.tls is not None and cfg.tls.require_client_cert and cfg.tls.ca_file == "/t/ca.pem"
    assert cfg.broadcaster is not None and cfg.broadcaster.peer_listen == "0.0.0.0:7301"


def test_mutual_tls_without_a_ca_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"'tls\.ca_file'"):
        from_mapping(config({"cert_file": "/c", "key_file": "/k"}, peer_listen="0.0.0.0:7301"), env={})


def test_broadcaster_with_mutual_tls_needs_a_peer_port() -> None:
    with pytest.raises(ConfigError, match=r"'broadcaster\.peer_listen'"):
        from_mapping(config(TLS), env={})
    # TLS without client certificates (viewers and peers alike) needs none.
    cfg = from_mapping(config({**TLS, "require_client_cert": False}), env={})
    assert cfg.tls is not None and not cfg.tls.require_client_cert


def test_unknown_tls_key_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"'tls\.certfile'"):
        from_mapping(config({**TLS, "certfile": "/x"}, peer_listen="0.0.0.0:7301"), env={})


def test_node_start_refuses_a_key_that_does_not_match(tmp_path: Any) -> None:
    from reactmesh.region_node.certs import CertificateAuthority
    from reactmesh.region_node.node import Node

    ca = CertificateAuthority.create()
    files = ca.write_node(tmp_path, "n")
    files.key_file.write_bytes(ca.issue("other")[1])
    tls = {"cert_file": str(files.cert_file), "key_file": str(files.key_file), "ca_file": str(files.ca_file)}
    with pytest.raises(ConfigError, match="key does not match"):
        Node(from_mapping(config(tls, peer_listen="127.0.0.1:0"), env={}), frozenset({"broadcaster"}))
