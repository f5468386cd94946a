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
