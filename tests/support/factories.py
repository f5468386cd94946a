"""Build realistic test mail, and the texts of two typical requests."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.utils import make_msgid

CRITICAL = (
    "Unser Produktivsystem ist komplett ausgefallen. Kein Agent kann sich am OTRS anmelden, "
    "alle 40 Benutzer sind betroffen und es gibt keinen Workaround."
)
SMALL = "Kleine Frage: kann man die Farbe der Ticketübersicht anpassen? Eilt nicht."


def make_mail(
    sender: str = "it@muster.example",
    subject: str = "Produktivsystem ausgefallen",
    body: str = (
        "Hallo,\nseit 9 Uhr ist unser Znuny-Produktivsystem komplett ausgefallen, auch nach dem "
        "Neustart. Niemand kann arbeiten, es gibt keinen Workaround.\n\nGrüße\nErika Muster"
    ),
    to: str = "support@example.com",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="customer.example")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)  # CRLF line ends, as on the wire


def make_dsn(
    recipient: str,
    *,
    returned: str = "",
    returned_as: str = "text/rfc822-headers",
    original_message_id: str | None = None,
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    """A delivery status notification (RFC 3464) saying `recipient` failed for good, from the
    receiving side's MAILER-DAEMON. `returned` is the returned message's header block, sent as
    `returned_as` (text/rfc822-headers or message/rfc822); `original_message_id` the
    Original-Message-ID field some MTAs add to the report."""
    per_message = "Reporting-MTA: dns; mx.muster.example\r\n"
    if original_message_id:
        per_message += f"Original-Message-ID: {original_message_id}\r\n"
    parts = [
        "Content-Type: text/plain\r\n\r\nDelivery failed.\r\n",
        "Content-Type: message/delivery-status\r\n\r\n"
        + per_message
        + f"\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n",
    ]
    if returned:
        body = returned.strip().replace("\n", "\r\n") + "\r\n"
        if returned_as == "message/rfc822":
            body += "\r\nThe returned text.\r\n"
        parts.append(f"Content-Type: {returned_as}\r\n\r\n{body}")
    head = {
        "From": "MAILER-DAEMON@mx.muster.example",
        "To": "support@example.com",
        "Subject": "Undelivered Mail Returned to Sender",
        "Message-ID": message_id or make_msgid(domain="mx.muster.example"),
        "Auto-Submitted": "auto-replied",
        "MIME-Version": "1.0",
        "Content-Type": 'multipart/report; report-type=delivery-status; boundary="B"',
    } | (headers or {})
    text = "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    text += "".join(f"--B\r\n{part}" for part in parts) + "--B--\r\n"
    return text.encode()
