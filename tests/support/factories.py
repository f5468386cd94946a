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


HEAD = (
    b"From: Erika Muster <it@muster.example>\r\nTo: support@example.com\r\n"
    b"Message-ID: <%s@muster.example>\r\nMIME-Version: 1.0\r\n"
)


def many_parts_mail(parts: int) -> bytes:
    """One multipart/mixed with `parts` tiny text parts, "Teil 00001." and so on."""
    body = b"".join(
        b"--b\r\nContent-Type: text/plain\r\n\r\nTeil %05d.\r\n" % i for i in range(1, parts + 1)
    )
    return (
        HEAD % b"parts%d" % parts
        + b"Subject: Viele Teile\r\n"
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + body
        + b"--b--\r\n"
    )


def nested_mail(depth: int) -> bytes:
    """Multiparts `depth` levels deep; a text "oben" at the first level, "ganz innen" at the
    deepest."""
    out = HEAD % b"nested%d" % depth + b"Subject: Tief verschachtelt\r\n"
    out += b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    out += b"--b0\r\nContent-Type: text/plain\r\n\r\noben\r\n"
    for i in range(1, depth):
        out += b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i)
    out += b"--b%d\r\nContent-Type: text/plain\r\n\r\nganz innen\r\n" % (depth - 1)
    for i in range(depth - 1, -1, -1):
        out += b"--b%d--\r\n" % i
    return out
