"""The local stack's SMTP server: a relay as strict as the providers' (aiosmtpd).

    python -m telemetry.local.smtp_server --port P --dir D --username U --password-file F

Like SendGrid, Mailgun, SES or Postmark on their submission port, it refuses any
command but EHLO/HELO/NOOP/QUIT before STARTTLS (`530 Must issue a STARTTLS command
first`), refuses mail before AUTH (`530 Authentication required`), accepts only the
credentials the stack made (`D/password`), and refuses a message over
MAX_MESSAGE_BYTES (`552`, as SES and Postmark do past 10 MB). Its certificate is
self-signed, made at each start (`D/cert.pem`, which the stack names in
SMTP_CA_FILE, so clients check it as they check a real relay's). Every accepted
message is stored in the Maildir `D/maildir`, which tests and the demo read
(`received`).
"""

from __future__ import annotations

import argparse
import datetime
import email
import email.policy
import ipaddress
import signal
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
HOST = "127.0.0.1"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A new self-signed certificate for 127.0.0.1 and localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local smtp relay")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


def received(directory: Path) -> list[EmailMessage]:
    """Every message the server accepted, oldest first, parsed with the modern email policy
    (headers unfolded, `get_body`)."""
    folder = directory / "maildir" / "new"
    if not folder.exists():
        return []
    # Maildir file names start with the delivery time, in seconds.
    files = sorted(folder.iterdir(), key=lambda path: (path.stat().st_mtime, path.name))
    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in files]


def serve(port: int, directory: Path, username: str, password: str) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Mailbox
    from aiosmtpd.smtp import AuthResult, LoginPassword

    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = make_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode() == username and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 on failure

    controller = Controller(
        Mailbox(directory / "maildir"),
        hostname=HOST,
        port=port,
        server_hostname="localhost",
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticator,
        data_size_limit=MAX_MESSAGE_BYTES,
        # The readiness probe of Controller.start() cannot STARTTLS; readiness is the stack's (a TCP connect).
        ready_timeout=10,
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.port, args.dir, args.username, args.password_file.read_text().strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
