# -*- test-case-name: tests.test_tls -*-
"""
TLS for the ``--rtmps`` listener: certificates, the development certificate,
and reloading on SIGHUP.

The listener's endpoint string is split by :func:`split_tls_endpoint`: an
``ssl:PORT:privateKey=...:certKey=...:extraCertChain=...`` string becomes the
plain ``tcp:PORT...`` socket plus the certificate files, and TLS is added by
Twisted's ``TLSMemoryBIOFactory`` (pyOpenSSL) with a
:class:`ReloadableTLS` connection creator.  Any other endpoint type
(``tcp:``, ``unix:``, ``systemd:``) gets TLS on top as it is.

Files come from the endpoint string, else from the ``[tls]`` table of the
config file, else :func:`ensure_dev_certificate` creates (once) a self-signed
certificate for ``localhost`` under the state directory.

:meth:`ReloadableTLS.reload` reads the files again and swaps the OpenSSL
context used for *new* connections; connections already open keep theirs, so
a certificate renewal (SIGHUP, see :class:`CertificateReloader`) drops no one.
"""

from __future__ import annotations

import datetime
import ipaddress
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.application.service import Service
from twisted.internet.endpoints import quoteStringArgument
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from zope.interface import implementer

_log = Logger()

#: Endpoint-string keys that name certificate files (Twisted's ``ssl:`` names).
TLS_KEYS = ("privateKey", "certKey", "extraCertChain")
#: Socket keys an ``ssl:`` string may carry besides the port.
SOCKET_KEYS = ("interface", "backlog")

DEV_CERT = "dev-cert.pem"
DEV_KEY = "dev-key.pem"
#: How long a development certificate is valid.
DEV_VALIDITY = datetime.timedelta(days=825)


class TLSConfigError(Exception):
    """A TLS endpoint string or certificate file is unusable."""


#: Highest TLS version offered, by config name.  "1.2" is the default:
#: librtmp built on GnuTLS (Debian's rtmpdump) fails on the session tickets a
#: TLS 1.3 server sends after the handshake, and Flash-era clients stop at 1.2.
MAX_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}


@attrs.frozen
class CertificateFiles:
    """Where a listener's key, certificate and chain live, and the TLS ceiling."""

    private_key: Path
    certificate: Path
    chain: Path | None = None
    #: A key of :data:`MAX_VERSIONS`.
    max_version: str = "1.2"


def _split_strport(description: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def split_tls_endpoint(description: str) -> tuple[str, CertificateFiles | None]:
    """
    Turn a ``--rtmps`` endpoint string into a socket endpoint string and the
    certificate files it names (None when it names none).

    ``ssl:443:interface=127.0.0.1:privateKey=k.pem`` gives
    ``("tcp:443:interface=127.0.0.1", CertificateFiles(k.pem, k.pem))``;
    ``certKey`` defaults to ``privateKey`` as in Twisted.  Other endpoint types
    are returned unchanged (TLS goes on top of them).
    """
    parts = _split_strport(description)
    if parts[0] != "ssl":
        return description, None
    positional: list[str] = []
    socket_options: list[str] = []
    files: dict[str, str] = {}
    for part in parts[1:]:
        key, equals, value = part.partition("=")
        if not equals:
            positional.append(part)
        elif key in TLS_KEYS:
            files[key] = value
        elif key in SOCKET_KEYS:
            socket_options.append(f"{key}={quoteStringArgument(value)}")
        else:
            raise TLSConfigError(
                f"{description!r}: {key!r} is not supported here "
                f"(known: {', '.join(SOCKET_KEYS + TLS_KEYS)})"
            )
    if len(positional) != 1:
        raise TLSConfigError(f"{description!r}: expected ssl:PORT[:key=value...]")
    socket = ":".join(["tcp", quoteStringArgument(positional[0]), *socket_options])
    if not files:
        return socket, None
    if "privateKey" not in files:
        raise TLSConfigError(f"{description!r}: certKey/extraCertChain need privateKey")
    chain = files.get("extraCertChain")
    return socket, CertificateFiles(
        Path(files["privateKey"]),
        Path(files.get("certKey", files["privateKey"])),
        Path(chain) if chain else None,
    )


def ensure_dev_certificate(
    state_dir: Path, now: Callable[[], datetime.datetime] | None = None
) -> CertificateFiles:
    """
    The self-signed development certificate under ``state_dir/tls``, created
    (RSA 2048, for ``localhost``, 127.0.0.1 and ::1) if missing or expired.
    """
    when = (now or (lambda: datetime.datetime.now(datetime.UTC)))()
    directory = state_dir / "tls"
    files = CertificateFiles(directory / DEV_KEY, directory / DEV_CERT)
    if files.private_key.exists() and files.certificate.exists():
        try:
            certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
        except ValueError:
            certificate = None
        if certificate is not None and certificate.not_valid_after_utc > when:
            _log.info(
                "Using the self-signed development certificate {path} (SHA-256 {fingerprint})",
                path=str(files.certificate),
                fingerprint=certificate.fingerprint(hashes.SHA256()).hex(":"),
            )
            return files
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flashstream development")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - datetime.timedelta(hours=1))
        .not_valid_after(when + DEV_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        # Its own trust anchor: a client may trust this file (ffmpeg's -ca_file).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    files.private_key.touch(mode=0o600)
    files.private_key.chmod(0o600)
    files.private_key.write_bytes(key_pem)
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _log.warn(
        "Created a self-signed development certificate {path} (SHA-256 {fingerprint}) "
        "for localhost; clients that verify certificates will refuse it: give a real "
        "one with privateKey=/certKey= on --rtmps or in the [tls] table",
        path=str(files.certificate),
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(":"),
    )
    return files


def load_context(files: CertificateFiles) -> tuple[SSL.Context, x509.Certificate]:
    """An OpenSSL server context for ``files``; :class:`TLSConfigError` if unusable."""
    try:
        key_pem = files.private_key.read_bytes()
        cert_pem = files.certificate.read_bytes()
        chain_pem = files.chain.read_bytes() if files.chain is not None else b""
    except OSError as error:
        raise TLSConfigError(f"cannot read {error.filename}: {error.strerror}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        certificates = x509.load_pem_x509_certificates(cert_pem)
        chain = x509.load_pem_x509_certificates(chain_pem) if chain_pem else []
    except (ValueError, TypeError) as error:
        raise TLSConfigError(f"{files.certificate} / {files.private_key}: {error}") from None
    leaf, extra = certificates[0], certificates[1:] + chain
    try:
        # Twisted's defaults (protocol versions, ciphers) with cryptography
        # objects, which pyOpenSSL's context methods take directly.
        options = CertificateOptions(
            privateKey=key,  # type: ignore[arg-type]
            certificate=leaf,  # type: ignore[arg-type]
            extraCertChain=extra,  # type: ignore[arg-type]
            lowerMaximumSecurityTo=MAX_VERSIONS[files.max_version],
        )
        context = options.getContext()
    except (SSL.Error, ValueError, TypeError) as error:
        raise TLSConfigError(
            f"{files.certificate} and {files.private_key} do not make a TLS identity: {error}"
        ) from None
    return context, leaf


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """Server TLS connections from the current context; :meth:`reload` swaps it."""

    def __init__(self, files: CertificateFiles, label: str) -> None:
        self.files = files
        self.label = label
        self.context, self.certificate = load_context(files)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A connection on the newest context (older connections keep theirs)."""
        return SSL.Connection(self.context, None)

    def reload(self) -> bool:
        """Read the files again; on error keep the current certificate and log why."""
        try:
            self.context, self.certificate = load_context(self.files)
        except TLSConfigError as error:
            _log.error(
                "Keeping the current certificate of {label}: {error}",
                label=self.label,
                error=str(error),
            )
            return False
        _log.info(
            "Reloaded the TLS certificate of {label} from {path} (valid until {until})",
            label=self.label,
            path=str(self.files.certificate),
            until=self.certificate.not_valid_after_utc.isoformat(),
        )
        return True


class CertificateReloader(Service):
    """
    Reloads every TLS listener's certificate on SIGHUP.

    The handler only schedules the reload with ``reactor.callFromThread``;
    ``install_signal=False`` (tests) leaves the process's handlers alone.
    """

    def __init__(self, reactor: Any, install_signal: bool = True) -> None:
        self.reactor = reactor
        self.install_signal = install_signal
        self.creators: list[ReloadableTLS] = []
        self._previous: Any = None

    def reload(self) -> None:
        """Reload all certificates now."""
        for creator in self.creators:
            creator.reload()

    def startService(self) -> None:
        """Install the SIGHUP handler."""
        super().startService()
        if self.install_signal and self.creators:
            self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def stopService(self) -> None:
        """Put the previous SIGHUP handler back."""
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _on_signal(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self.reload)
