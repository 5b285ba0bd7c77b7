"""Email deliveries over SMTP: TLS always (STARTTLS or implicit), then AUTH.

Any provider's relay serves (SendGrid, Mailgun, SES and Postmark all offer SMTP
submission). One try is one connection: connect (bounded), TLS with the relay's
certificate checked against its host name, AUTH, one message to one recipient,
QUIT. Each mail's `Message-ID` is derived from the event id and the recipient, so
the same delivery sent twice (at least once) carries the same id.

A relay's 5xx answer to the sender, a recipient or the data (unknown mailbox,
message too large) is permanent: the delivery is set aside at once. Everything
else (no connection, a timeout, 4xx, an AUTH failure the operator can fix) is
retried.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from telemetry.notify.contract import EmailContent
from telemetry.notify.events import Event
from telemetry.notify.outbox import Outcome
from telemetry.notify.settings import SmtpSettings

MESSAGE_ID_DOMAIN = "notify.wp-telemetry"


def message(event: Event, recipient: str, content: EmailContent, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = content.subject
    mail["Date"] = format_datetime(event.occurred_at)
    per_recipient = hashlib.sha256(recipient.encode()).hexdigest()[:16]
    mail["Message-ID"] = f"<{event.id}.{per_recipient}@{MESSAGE_ID_DOMAIN}>"
    mail["X-Telemetry-Event-Id"] = event.id
    mail["X-Telemetry-Event-Type"] = event.type
    mail.set_content(content.text)
    if content.html is not None:
        mail.add_alternative(content.html, subtype="html")
    return mail


def tls_context(smtp: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=smtp.ca_file)


def _permanent(code: int | None) -> bool:
    return code is not None and 500 <= code < 600


def send(
    mail: EmailMessage, recipient: str, smtp: SmtpSettings, connect_timeout: float, read_timeout: float
) -> Outcome:
    """One try; never raises for what the relay does."""
    if not smtp.host:
        return Outcome(False, error="SMTP_RELAY is not set")
    context = tls_context(smtp)
    client: smtplib.SMTP
    try:
        # The constructor connects (within connect_timeout) and keeps the host name for TLS.
        if smtp.tls == "implicit":
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=connect_timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=connect_timeout)
        try:
            assert client.sock is not None
            client.sock.settimeout(read_timeout)
            client.ehlo()
            if smtp.tls == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(mail, from_addr=smtp.sender, to_addrs=[recipient])
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        return Outcome(False, status=code, error=f"recipient refused: {code} {_text(text)}", permanent=_permanent(code))
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
        return Outcome(False, status=e.smtp_code, error=f"{type(e).__name__}: {e.smtp_code} {_text(e.smtp_error)}",
                       permanent=_permanent(e.smtp_code))  # fmt: skip
    except smtplib.SMTPResponseException as e:
        return Outcome(False, status=e.smtp_code, error=f"{type(e).__name__}: {e.smtp_code} {_text(e.smtp_error)}")
    except (TimeoutError, smtplib.SMTPException, ssl.SSLError, OSError) as e:
        return Outcome(False, error=f"{type(e).__name__}: {e}")
    return Outcome(True, status=250)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
