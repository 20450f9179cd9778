"""A real HTTPS endpoint for tests of outgoing calls (callbacks): a throwaway CA, a server
certificate it issues, and a threaded receiver that records what it is sent and answers with
scripted statuses."""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class TestCA:
    """A certificate authority that exists for one test: its certificate goes to `ca_file`."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, directory: Path, name: str = "AROP test CA") -> None:
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = self.key.public_key()
        self.certificate = (
            self._builder(subject, subject, public)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(key_cert_sign=True), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / f"{name.replace(' ', '-')}.pem"
        self.ca_file.write_bytes(_pem(self.certificate))

    def issue_server(self, names: Sequence[str]) -> tuple[Path, Path]:
        """A server certificate for DNS names and IP addresses; returns (certificate, key) files."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        certificate = (
            self._builder(subject, self.certificate.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.directory / f"{names[0]}-{self.name.replace(' ', '-')}"
        certificate_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
        certificate_file.write_bytes(_pem(certificate))
        key_file.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return certificate_file, key_file

    @staticmethod
    def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )


def _usage(*, key_cert_sign: bool = False, digital_signature: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=key_cert_sign,
        encipher_only=False, decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class Received(msgspec.Struct, frozen=True):
    """One request as the receiver got it: the raw body, exactly as sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HttpsReceiver:
    """What an HTTPS endpoint on 127.0.0.1 was sent, and the statuses it answers with: the
    scripted ones in order, then `default_status`. `delay` holds each answer back that long.
    A GET is answered with `document` (a published JWK Set, say) and `document_headers`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.default_status = 200
        self.delay = 0.0
        self.document = b""
        self.document_headers: dict[str, str] = {}
        self.port = 0
        self._lock = threading.Lock()

    def record(self, request: Received) -> tuple[int, float]:
        with self._lock:
            self.received.append(request)
            status = self.statuses.pop(0) if self.statuses else self.default_status
            return status, self.delay


def _handler(receiver: HttpsReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = Received(method="POST", path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=body)
            status, delay = receiver.record(request)
            time.sleep(delay)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/redirected")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            request = Received(method="GET", path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=b"")
            status, delay = receiver.record(request)
            time.sleep(delay)
            body = receiver.document if status == 200 else b""
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/redirected")
            for name, value in receiver.document_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    return Handler


@contextmanager
def https_receiver(certificate_file: Path, key_file: Path) -> Iterator[HttpsReceiver]:
    """Serve HTTPS on 127.0.0.1 (a free port) from a thread until the block ends."""
    receiver = HttpsReceiver()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate_file, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
