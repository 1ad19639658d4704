"""TLS on every listener and mutual TLS between nodes, from PEM files that are reloaded when they change.

A node's ``[tls]`` section names its certificate (chain), its key and the CA that signs the mesh's nodes. Each
listener serves TLS with it; node-to-node listeners (an aggregator's port, a broadcaster's ``peer_listen``) also
*require* a client certificate signed by that CA (``require_client_cert``), so a plaintext or foreign-CA peer is
refused in the handshake. Viewer-facing listeners (the edge, a broadcaster's ``listen``) ask for no client
certificate: gRPC Python cannot request a certificate without requiring one, and viewers authenticate by token.
The node-to-node services (Gossip, Aggregator) are also guarded at the call level (``PeerCertificateGuard``): a
call that arrives without a verified client certificate, such as Gossip on a broadcaster's viewer port, is refused
with UNAUTHENTICATED, a log line and ``reactmesh_tls_peer_rejections_total{reason="no_client_certificate"}``.
Dialers classify the handshake failures they see (``ClientTLS.observe``): a peer that answers in plaintext
(``plaintext_peer``) or with a certificate the CA did not sign (``untrusted_certificate``).

Reload without restart: ``PemFiles`` re-reads the files when their (mtime, size, inode) change, and accepts a new
key pair only when the key matches the certificate (so a half-rotated pair keeps the old one). Listeners use
``grpc.dynamic_ssl_server_credentials``, whose fetcher runs before every handshake; client channels take fresh
credentials when they are (re)created: ``ReloadingChannel`` replaces its channel once the files changed and the
channel is not READY, so a healthy connection is kept and the next connection uses the new certificate.

What gRPC core refuses in the handshake (a plaintext or foreign-CA *client* on a port that requires certificates)
never reaches Python: it shows only in gRPC's own log ("Handshake failed ... WRONG_VERSION_NUMBER" or
"CERTIFICATE_VERIFY_FAILED"), and on the refused side as a dial failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reactmesh.edge.handlers import wrap_handler
from reactmesh.merge.errors import ConfigError

log = logging.getLogger(__name__)

PEER_SERVICES = frozenset({"reactmesh.v1.Gossip", "reactmesh.v1.Aggregator"})
"""Services only nodes call: they need a verified client certificate when ``require_client_cert`` is on."""


@dataclass(frozen=True)
class TLSConfig:
    """The ``[tls]`` section of a node's TOML."""

    cert_file: str
    key_file: str
    # PEM bundle of the CA(s) that sign the mesh's nodes: it verifies client certificates on node-to-node ports and
    # the servers this node dials. Without it, dialled servers are checked against the system roots and no client
    # certificate can be verified (require_client_cert must then be false).
    ca_file: str | None = None
    require_client_cert: bool = True
    # The name checked in dialled servers' certificates instead of the address's host (one SAN for every node).
    server_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("cert_file", "key_file"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"tls.{name}", "a path to a PEM file", value)
        if self.ca_file is not None and (not isinstance(self.ca_file, str) or not self.ca_file):
            raise ConfigError("tls.ca_file", "a path to a PEM CA bundle", self.ca_file)
        if not isinstance(self.require_client_cert, bool):
            raise ConfigError("tls.require_client_cert", "true or false", self.require_client_cert)
        if self.require_client_cert and self.ca_file is None:
            raise ConfigError(
                "tls.ca_file", "a CA bundle (needed to verify peers when require_client_cert = true)", None
            )
        if self.server_name is not None and (not isinstance(self.server_name, str) or not self.server_name):
            raise ConfigError("tls.server_name", "a DNS name in the nodes' certificates", self.server_name)


class TLSFilesError(Exception):
    """Raised by ``PemFiles.refresh`` when a file is missing or unreadable, or the key does not match the
    certificate, at the first load (a later failure keeps the previous files and is logged)."""


@dataclass
class TLSStats:
    """Counters of one node's TLS, read by the metrics collector."""

    rejections: Counter[str]
    reloads: int = 0
    reload_failures: int = 0
    cert_not_after_s: float = 0.0


class PemFiles:
    """The node's certificate, key and CA, re-read when a file changes (thread-safe: gRPC's fetcher may call
    ``refresh`` from its own thread). ``generation`` grows by one per accepted change."""

    def __init__(self, config: TLSConfig, stats: TLSStats | None = None) -> None:
        self.config = config
        self.stats = stats or TLSStats(Counter())
        self._paths = tuple(Path(p) for p in (config.cert_file, config.key_file, config.ca_file) if p is not None)
        self._lock = threading.Lock()
        self._signature: tuple[tuple[int, int, int], ...] | None = None
        self.cert = b""
        self.key = b""
        self.ca: bytes | None = None
        self.generation = 0
        self.refresh()  # raises TLSFilesError when the files are not usable at start

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for p in self._paths:
            st = os.stat(p)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)

    def refresh(self) -> bool:
        """Re-read the files if they changed; True if a new, consistent set was accepted."""
        with self._lock:
            try:
                signature = self._stat()
                if signature == self._signature:
                    return False
                cfg = self.config
                cert = Path(cfg.cert_file).read_bytes()
                key = Path(cfg.key_file).read_bytes()
                ca = Path(cfg.ca_file).read_bytes() if cfg.ca_file is not None else None
                not_after = _check_pair(cert, key, ca)
            except (OSError, ValueError) as exc:
                if self.generation == 0:
                    raise TLSFilesError(f"[tls] files not usable: {exc}") from exc
                self.stats.reload_failures += 1
                log.warning("tls: keeping the current certificate; the files changed but are not usable: %s", exc)
                # Not remembered: the next look (a handshake, a reconnect) tries again once the rotation is complete.
                return False
            self._signature = signature
            self.cert, self.key, self.ca = cert, key, ca
            self.stats.cert_not_after_s = not_after
            self.generation += 1
            if self.generation > 1:
                self.stats.reloads += 1
                log.info("tls: reloaded %s (certificate valid until %s)", cfg.cert_file, _utc(not_after))
            return True


def _check_pair(cert_pem: bytes, key_pem: bytes, ca_pem: bytes | None) -> float:
    """Raise ValueError unless the files parse and the key belongs to the certificate; return its notAfter."""
    certs = x509.load_pem_x509_certificates(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if ca_pem is not None:
        x509.load_pem_x509_certificates(ca_pem)
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if certs[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ValueError("the key does not match the certificate")
    return certs[0].not_valid_after_utc.timestamp()


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ServerTLS:
    """Listener credentials over one ``PemFiles``."""

    def __init__(self, files: PemFiles) -> None:
        self.files = files

    def credentials(self, *, require_client_cert: bool) -> grpc.ServerCredentials:
        """Credentials that pick up changed files at the next handshake; ``require_client_cert`` makes the
        listener refuse clients without a certificate signed by the CA."""
        files = self.files
        served = files.generation

        def configuration() -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration(
                [(files.key, files.cert)], root_certificates=files.ca if require_client_cert else None
            )

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            nonlocal served
            try:
                files.refresh()
                if files.generation == served:
                    return None
                served = files.generation
                return configuration()
            except Exception:  # never let an exception escape into gRPC core's handshake
                log.exception("tls: certificate fetcher failed; keeping the current certificate")
                return None

        # The stub types the fetcher's result without None, which gRPC documents as "no change".
        return grpc.dynamic_ssl_server_credentials(
            configuration(),
            fetch,  # type: ignore[arg-type]
            require_client_authentication=require_client_cert,
        )


_HANDSHAKE_REASONS = (
    ("WRONG_VERSION_NUMBER", "plaintext_peer"),
    ("CERTIFICATE_VERIFY_FAILED", "untrusted_certificate"),
)


class ClientTLS:
    """Channels to other nodes with this node's certificate (mTLS) and the CA; fresh credentials per channel."""

    def __init__(self, files: PemFiles) -> None:
        self.files = files
        self._generation = -1
        self._credentials: grpc.ChannelCredentials | None = None
        self._logged: set[tuple[str, str]] = set()

    def credentials(self) -> grpc.ChannelCredentials:
        """Credentials from the files as they are now."""
        self.files.refresh()
        if self._credentials is None or self._generation != self.files.generation:
            f = self.files
            self._credentials = grpc.ssl_channel_credentials(f.ca, f.key, f.cert)
            self._generation = f.generation
        return self._credentials

    def channel_options(self, options: tuple[tuple[str, Any], ...] = ()) -> tuple[tuple[str, Any], ...]:
        name = self.files.config.server_name
        return (*options, ("grpc.ssl_target_name_override", name)) if name is not None else options

    def channel(self, address: str, options: tuple[tuple[str, Any], ...] = ()) -> grpc.aio.Channel:
        """A new secure channel to ``address`` with the current credentials."""
        return grpc.aio.secure_channel(address, self.credentials(), options=self.channel_options(options))

    def reloading_channel(self, address: str, options: tuple[tuple[str, Any], ...] = ()) -> ReloadingChannel:
        return ReloadingChannel(self, address, options)

    def observe(self, address: str, exc: grpc.aio.AioRpcError) -> str | None:
        """Classify a failed call to ``address``: count and log a refused peer (once per address and reason until
        it connects again); return the reason, or None for other failures."""
        details = exc.details() or ""
        for marker, reason in _HANDSHAKE_REASONS:
            if marker in details:
                self.files.stats.rejections[reason] += 1
                if (address, reason) not in self._logged:
                    self._logged.add((address, reason))
                    log.warning(
                        "tls: refused peer %s (%s): %s",
                        address,
                        reason,
                        "it answers in plaintext"
                        if reason == "plaintext_peer"
                        else f"its certificate is not signed by {self.files.config.ca_file or 'the system roots'}",
                    )
                return reason
        return None

    def connected(self, address: str) -> None:
        """Forget what was logged about ``address`` (it connected), so a new refusal is logged again."""
        self._logged = {k for k in self._logged if k[0] != address}


class ReloadingChannel:
    """A grpc.aio channel that is replaced by one with fresh credentials once the files changed and it is not
    READY (a healthy connection is kept). Multicallables look the channel up per call, so a stub built once keeps
    working across replacements; a call stuck waiting for a channel that cannot connect is cancelled when the
    channel is replaced (checked every ``check_s``), so its owner retries on the new one."""

    def __init__(
        self, tls: ClientTLS, address: str, options: tuple[tuple[str, Any], ...] = (), check_s: float = 2.0
    ) -> None:
        self._tls = tls
        self._address = address
        self._options = options
        self._check_s = check_s
        self._generation = tls.files.generation
        self._channel = tls.channel(address, options)
        self._watch: asyncio.Task[None] | None = None
        self._closed = False
        self.replacements = 0

    def current(self) -> grpc.aio.Channel:
        if self._watch is None and not self._closed:
            self._watch = asyncio.get_running_loop().create_task(self._watch_files(), name=f"tls-{self._address}")
        self._renew(cancel_calls=False)
        return self._channel

    def _renew(self, *, cancel_calls: bool) -> None:
        self._tls.files.refresh()
        if self._tls.files.generation == self._generation:
            return
        if self._channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY:
            return
        old = self._channel
        self._generation = self._tls.files.generation
        self._channel = self._tls.channel(self._address, self._options)
        self.replacements += 1
        log.info("tls: new channel to %s with the reloaded certificate", self._address)
        # Calls still on the old channel finish (or, when it cannot connect, are cancelled at once).
        asyncio.get_running_loop().create_task(old.close(grace=None if cancel_calls else 30.0))

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self._check_s)
            self._renew(cancel_calls=True)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return lambda *a, **k: self.current().unary_unary(method, *args, **kwargs)(*a, **k)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return lambda *a, **k: self.current().unary_stream(method, *args, **kwargs)(*a, **k)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return lambda *a, **k: self.current().stream_unary(method, *args, **kwargs)(*a, **k)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return lambda *a, **k: self.current().stream_stream(method, *args, **kwargs)(*a, **k)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._channel.close(grace)


class PeerCertificateGuard(grpc.aio.ServerInterceptor):
    """Refuses calls to ``services`` that carry no verified client certificate, with UNAUTHENTICATED, a log line
    and ``stats.rejections["no_client_certificate"]``. On a listener that requires client certificates every call
    has one (gRPC verified it against the CA in the handshake); elsewhere (a viewer-facing port) node-to-node
    services are refused."""

    def __init__(self, stats: TLSStats, role: str, services: Collection[str] = PEER_SERVICES) -> None:
        self._stats = stats
        self._role = role
        self._services = frozenset(services)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.split("/")[1] not in self._services:
            return handler
        return _guarded(handler, self._check, method)

    async def _check(self, context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
        if context.auth_context().get("x509_subject"):
            return
        self._stats.rejections["no_client_certificate"] += 1
        log.warning(
            "tls: refused %s from %s on the %s's viewer-facing port: no client certificate (nodes dial the peer port)",
            method,
            context.peer(),
            self._role,
        )
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"{method} needs a client certificate signed by the mesh CA; on a broadcaster dial its peer_listen port",
        )


Check = Callable[[grpc.aio.ServicerContext[Any, Any], str], Awaitable[None]]


def _guarded(handler: grpc.RpcMethodHandler[Any, Any], check: Check, method: str) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with ``check(context)`` awaited before its behaviour."""

    @contextlib.asynccontextmanager
    async def guard(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        await check(context, method)
        yield

    return wrap_handler(handler, guard)


@dataclass
class NodeTLS:
    """One node's TLS: the files, listener and channel credentials, and the counters for metrics."""

    config: TLSConfig
    files: PemFiles
    server: ServerTLS
    client: ClientTLS

    @classmethod
    def load(cls, config: TLSConfig) -> NodeTLS:
        """Read the files; raises ConfigError naming ``tls`` when they are not usable."""
        try:
            files = PemFiles(config)
        except TLSFilesError as exc:
            raise ConfigError("tls", "readable PEM files, the key matching the certificate", str(exc)) from exc
        return cls(config, files, ServerTLS(files), ClientTLS(files))

    @property
    def stats(self) -> TLSStats:
        return self.files.stats


def client_credentials(ca_file: str | None) -> grpc.ChannelCredentials:
    """Credentials of a viewer-side client (CLI, SDK users): TLS checked against ``ca_file`` (system roots when
    None), no client certificate."""
    return grpc.ssl_channel_credentials(Path(ca_file).read_bytes() if ca_file is not None else None)
