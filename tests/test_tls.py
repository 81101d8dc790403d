# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Tests for :mod:`flashstream.tls`: endpoint strings, the development
certificate, loading real certificates, and reloading them without dropping
open connections (TLS in memory with ``twisted.test.iosim``).
"""

from __future__ import annotations

import datetime
import shutil
import signal
import stat
import tempfile
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from flashstream.tls import (
    CertificateFiles,
    CertificateReloader,
    ReloadableTLS,
    TLSConfigError,
    ensure_dev_certificate,
    load_context,
    split_tls_endpoint,
)

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


def temp_dir(case: SynchronousTestCase) -> Path:
    """A temporary directory removed after the test."""
    directory = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, directory)
    return Path(directory)


class SplitEndpointTests(SynchronousTestCase):
    """--rtmps endpoint strings."""

    def test_ssl_without_files(self) -> None:
        """ssl:PORT becomes tcp:PORT with no files (the development certificate is used)."""
        self.assertEqual(split_tls_endpoint("ssl:443"), ("tcp:443", None))
        self.assertEqual(
            split_tls_endpoint("ssl:0:interface=127.0.0.1:backlog=5"),
            ("tcp:0:interface=127.0.0.1:backlog=5", None),
        )

    def test_ssl_with_files_and_escapes(self) -> None:
        """privateKey/certKey/extraCertChain are taken out; certKey defaults to privateKey."""
        socket, files = split_tls_endpoint(
            r"ssl:8443:interface=\:\:1:privateKey=/k.pem:extraCertChain=/c.pem"
        )
        self.assertEqual(socket, r"tcp:8443:interface=\:\:1")
        self.assertEqual(files, CertificateFiles(Path("/k.pem"), Path("/k.pem"), Path("/c.pem")))
        _, files = split_tls_endpoint("ssl:1:privateKey=k.pem:certKey=c.pem")
        self.assertEqual(files, CertificateFiles(Path("k.pem"), Path("c.pem")))

    def test_other_types_get_tls_on_top(self) -> None:
        """tcp:, unix: ... are returned unchanged."""
        self.assertEqual(
            split_tls_endpoint("tcp:0:interface=127.0.0.1"), ("tcp:0:interface=127.0.0.1", None)
        )

    def test_errors(self) -> None:
        """Unknown keys, missing port and certKey without privateKey are clear errors."""
        with self.assertRaisesRegex(TLSConfigError, "sslmethod"):
            split_tls_endpoint("ssl:443:sslmethod=TLSv1_METHOD")
        with self.assertRaisesRegex(TLSConfigError, "ssl:PORT"):
            split_tls_endpoint("ssl")
        with self.assertRaisesRegex(TLSConfigError, "privateKey"):
            split_tls_endpoint("ssl:443:certKey=c.pem")


class DevCertificateTests(SynchronousTestCase):
    """The self-signed development certificate."""

    def setUp(self) -> None:
        """Capture log events."""
        # createWithCleanup is annotated for trial's TestCase; it only needs addCleanup.
        self.log = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def test_created_once_and_reused(self) -> None:
        """First run creates key (0600) and certificate for localhost and logs it; then reuse."""
        state = temp_dir(self) / "state"
        files = ensure_dev_certificate(state, lambda: NOW)
        self.assertEqual(files.certificate, state / "tls" / "dev-cert.pem")
        self.assertEqual(stat.S_IMODE(files.private_key.stat().st_mode), 0o600)
        cert = x509.load_pem_x509_certificate(files.certificate.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertIn("localhost", names.get_values_for_type(x509.DNSName))
        self.assertGreater(cert.not_valid_after_utc, NOW + datetime.timedelta(days=365))
        created = [e for e in self.log if "Created a self-signed" in e["log_format"]]
        self.assertEqual(len(created), 1)
        self.assertEqual(created[0]["path"], str(files.certificate))
        before = files.certificate.read_bytes()
        self.assertEqual(ensure_dev_certificate(state, lambda: NOW), files)
        self.assertEqual(files.certificate.read_bytes(), before)
        self.assertEqual(
            len([e for e in self.log if "Using the self-signed" in e["log_format"]]), 1
        )
        load_context(files)

    def test_expired_is_replaced(self) -> None:
        """An expired development certificate is created anew."""
        state = temp_dir(self)
        files = ensure_dev_certificate(state, lambda: NOW)
        before = files.certificate.read_bytes()
        ensure_dev_certificate(state, lambda: NOW + datetime.timedelta(days=900))
        self.assertNotEqual(files.certificate.read_bytes(), before)


class LoadTests(SynchronousTestCase):
    """Loading certificate files."""

    def test_missing_and_mismatched(self) -> None:
        """A missing file or a key that does not match the certificate is a TLSConfigError."""
        a = ensure_dev_certificate(temp_dir(self), lambda: NOW)
        b = ensure_dev_certificate(temp_dir(self), lambda: NOW)
        with self.assertRaisesRegex(TLSConfigError, "cannot read"):
            load_context(CertificateFiles(Path("/nonexistent/key.pem"), a.certificate))
        with self.assertRaisesRegex(TLSConfigError, "do not make a TLS identity"):
            load_context(CertificateFiles(a.private_key, b.certificate))
        with self.assertRaises(TLSConfigError):
            load_context(CertificateFiles(a.private_key, a.private_key))

    def test_combined_file_and_chain(self) -> None:
        """Key and certificate in one file (certKey = privateKey) plus a chain file load."""
        a = ensure_dev_certificate(temp_dir(self), lambda: NOW)
        b = ensure_dev_certificate(temp_dir(self), lambda: NOW)
        combined = temp_dir(self) / "server.pem"
        combined.write_bytes(a.private_key.read_bytes() + a.certificate.read_bytes())
        _, leaf = load_context(CertificateFiles(combined, combined, b.certificate))
        self.assertEqual(leaf, x509.load_pem_x509_certificate(a.certificate.read_bytes()))


class Echo(Protocol):
    """Echoes what it receives."""

    def dataReceived(self, data: bytes) -> None:
        """Send it back."""
        assert self.transport is not None
        self.transport.write(data)


class Collect(Protocol):
    """Collects what it receives."""

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        """Remember it."""
        self.data += data


class Pump:
    """Moves bytes between the in-memory TLS peers (and their write-aggregation clock)."""

    def __init__(self, pump: Any, clock: Clock) -> None:
        self.pump = pump
        self.clock = clock

    def flush(self) -> None:
        """Until nothing moves."""
        for _ in range(10):
            self.clock.advance(0)
            self.pump.flush()


def tls_pair(creator: ReloadableTLS, trusted: Path) -> tuple[Collect, Any, Pump]:
    """A TLS client trusting ``trusted`` connected in memory to an echo server on ``creator``."""
    clock = Clock()
    server_factory = TLSMemoryBIOFactory(creator, False, Factory.forProtocol(Echo), clock=clock)
    client_proto = Collect()
    options = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(trusted.read_bytes()))
    client_factory = TLSMemoryBIOFactory(
        options, True, Factory.forProtocol(lambda: client_proto), clock=clock
    )
    client, _server, pump = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None),
        lambda: client_factory.buildProtocol(None),
        clock=clock,
    )
    return client_proto, client, Pump(pump, clock)


class ReloadTests(SynchronousTestCase):
    """Swapping certificates under open connections."""

    def setUp(self) -> None:
        """Capture log events."""
        # createWithCleanup is annotated for trial's TestCase; it only needs addCleanup.
        self.log = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def test_reload_keeps_open_connections(self) -> None:
        """
        After reload, an open connection keeps working on the old certificate
        while new connections get the new one.
        """
        old = ensure_dev_certificate(temp_dir(self))
        new = ensure_dev_certificate(temp_dir(self))
        live = temp_dir(self)
        files = CertificateFiles(live / "key.pem", live / "cert.pem")
        shutil.copy(old.private_key, files.private_key)
        shutil.copy(old.certificate, files.certificate)
        creator = ReloadableTLS(files, "ssl:443")
        first, first_client, first_pump = tls_pair(creator, old.certificate)
        first_client.write(b"hello")
        first_pump.flush()
        self.assertEqual(first.data, b"hello")

        shutil.copy(new.private_key, files.private_key)
        shutil.copy(new.certificate, files.certificate)
        self.assertTrue(creator.reload())
        first_client.write(b" again")
        first_pump.flush()
        self.assertEqual(first.data, b"hello again")

        second, second_client, second_pump = tls_pair(creator, new.certificate)
        second_client.write(b"new")
        second_pump.flush()
        self.assertEqual(second.data, b"new")
        self.assertEqual(len([e for e in self.log if "Reloaded" in e["log_format"]]), 1)

    def test_failed_reload_keeps_certificate(self) -> None:
        """A broken file on reload is logged and the current certificate stays in use."""
        dev = ensure_dev_certificate(temp_dir(self))
        live = temp_dir(self)
        files = CertificateFiles(live / "key.pem", live / "cert.pem")
        shutil.copy(dev.private_key, files.private_key)
        shutil.copy(dev.certificate, files.certificate)
        creator = ReloadableTLS(files, "ssl:443")
        context = creator.context
        files.certificate.write_text("garbage")
        self.assertFalse(creator.reload())
        self.assertIs(creator.context, context)
        [event] = [e for e in self.log if "Keeping the current" in e["log_format"]]
        self.assertEqual(event["label"], "ssl:443")
        client, client_transport, pump = tls_pair(creator, dev.certificate)
        client_transport.write(b"x")
        pump.flush()
        self.assertEqual(client.data, b"x")


class VersionTests(SynchronousTestCase):
    """The TLS version ceiling."""

    def test_tls12_by_default_13_on_request(self) -> None:
        """TLS 1.2 is the default ceiling (librtmp+GnuTLS fails on 1.3 tickets); 1.3 on request."""
        dev = ensure_dev_certificate(temp_dir(self))
        for max_version, expected in (("1.2", "TLSv1.2"), ("1.3", "TLSv1.3")):
            creator = ReloadableTLS(attrs.evolve(dev, max_version=max_version), "x")
            client, client_transport, pump = tls_pair(creator, dev.certificate)
            client_transport.write(b"v")
            pump.flush()
            self.assertEqual(client.data, b"v")
            connection = client_transport.getHandle()
            self.assertEqual(connection.get_protocol_version_name(), expected)


class FakeReactor:
    """Records callFromThread calls."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callFromThread(self, f: Any, *args: Any) -> None:
        """Remember the call."""
        self.calls.append(f)


class ReloaderServiceTests(SynchronousTestCase):
    """The SIGHUP handler."""

    def test_sighup_schedules_reload_and_is_removed(self) -> None:
        """Start installs a SIGHUP handler scheduling a reload; stop restores the old one."""
        before = signal.getsignal(signal.SIGHUP)
        reactor = FakeReactor()
        reloader = CertificateReloader(reactor)
        dev = ensure_dev_certificate(temp_dir(self), lambda: NOW)
        reloader.creators.append(ReloadableTLS(dev, "ssl:443"))
        reloader.startService()
        try:
            handler = signal.getsignal(signal.SIGHUP)
            self.assertTrue(callable(handler))
            assert callable(handler)
            handler(signal.SIGHUP, None)
            self.assertEqual(reactor.calls, [reloader.reload])
        finally:
            reloader.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)

    def test_no_signal_when_told_not_to(self) -> None:
        """install_signal=False leaves the process's handlers alone."""
        before = signal.getsignal(signal.SIGHUP)
        reloader = CertificateReloader(FakeReactor(), install_signal=False)
        reloader.creators.append(
            ReloadableTLS(ensure_dev_certificate(temp_dir(self), lambda: NOW), "x")
        )
        reloader.startService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)
        reloader.stopService()
