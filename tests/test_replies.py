"""Reply templates: both languages, strict about missing values, safe with hostile subjects."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from intake.domain import Channel
from intake.replies import TEMPLATES_DIR, ReplyContext, ReplyKind, ReplyRenderer, reply_subject

RENDERER = ReplyRenderer()


def context(**overrides: object) -> ReplyContext:
    values: dict[str, object] = dict(
        kind=ReplyKind.CONFIRMATION,
        language="de",
        ticket_number="2026112810000012",
        subject="Drucker",
        sender="it@muster.example",
        contact_name="Erika Muster",
        contract_title="OTRS-Support Basic",
        priority="Hoch",
        deadline_text="Montag, 30.11.2026, 11:00 Uhr",
        commitment=True,
    )
    values.update(overrides)
    return ReplyContext(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(ReplyKind))
@pytest.mark.parametrize("language", ["de", "en"])
def test_every_reply_renders_in_both_languages_with_the_ticket_number(
    kind: ReplyKind, language: str
) -> None:
    reply = RENDERER.render(context(kind=kind, language=language, reasons=("Vertrag abgelaufen",)))
    assert "2026112810000012" in reply.text and "2026112810000012" in reply.html
    assert reply.subject.startswith("[Ticket#2026112810000012]")
    greeting = "Guten Tag" if language == "de" else "Hello"
    assert reply.text.startswith(greeting)


def test_a_commitment_and_a_target_are_worded_differently() -> None:
    assert "zugesagte Reaktionszeit" in RENDERER.render(context()).text
    assert "angestrebte Reaktionszeit" in RENDERER.render(context(commitment=False)).text


def test_html_in_a_subject_is_escaped_in_the_html_part() -> None:
    reply = RENDERER.render(context(subject="<script>alert(1)</script>"))
    assert "<script>" not in reply.html and "&lt;script&gt;" in reply.html


def test_a_missing_value_is_an_error_not_an_empty_string(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "confirmation.de.txt.j2").write_text("{{ not_there }}")
    (tmp_path / "mail" / "confirmation.de.html.j2").write_text("x")
    with pytest.raises(UndefinedError):
        ReplyRenderer(tmp_path).render(context())


def test_the_reply_subject_is_one_line_whatever_the_customer_wrote() -> None:
    subject = reply_subject("1", "Hilfe\r\nBcc: victim@example.com")
    assert subject == "[Ticket#1] Re: Hilfe Bcc: victim@example.com"
    assert reply_subject("1", "AW: Frage") == "[Ticket#1] AW: Frage"
    assert reply_subject("1", "") == "[Ticket#1]"


@pytest.mark.parametrize("kind", list(ReplyKind))
@pytest.mark.parametrize("language", ["de", "en"])
def test_every_chat_answer_renders_in_both_languages(kind: ReplyKind, language: str) -> None:
    ctx = context(
        kind=kind,
        language=language,
        reasons=("Vertrag abgelaufen",),
        request_number=26,
        quota=30,
        requests_left=4,
        quota_low=True,
    )
    reply = RENDERER.render(ctx, channel=Channel.TELEGRAM)
    assert "2026112810000012" in reply.text and reply.html == ""
    assert "<" not in reply.text  # plain text for the chat
    if kind is ReplyKind.CONFIRMATION:
        assert ("26. von 30" if language == "de" else "26 of 30") in reply.text
        assert ("Erweiterung" if language == "de" else "extending") in reply.text


@pytest.mark.parametrize("language", ["de", "en"])
def test_every_chat_text_renders_in_both_languages(language: str) -> None:
    values: dict[str, object] = dict(
        email="it@muster.example",
        minutes=15,
        code="123456",
        username="erika",
        customer="Muster GmbH",
        left=2,
        tickets=[{"number": "1", "priority": "Hoch", "deadline": "", "subject": "x"}],
        number="2026112810000012",
        subject="Drucker",
        names="dump.tar",
        count=1,
        limit=20,
        priority="Hoch",
        old="Kritisch",
        changed=True,
        staff="@lead",
    )
    names = sorted(
        p.name.split(".")[0] for p in (TEMPLATES_DIR / "telegram").glob(f"*.{language}.txt.j2")
    )
    kinds = {k.value for k in ReplyKind}
    for name in (n for n in names if n not in kinds):
        assert RENDERER.text(name, language, **values), name


def test_a_reply_cites_only_the_latest_few_references_the_sender_chose() -> None:
    from datetime import UTC, datetime
    from email import message_from_bytes, policy

    from intake.compose import MAX_REFERENCES, compose_reply
    from intake.replies import Reply

    references = (*(f"<ref-{i}@customer.example>" for i in range(500)), "<" + "x" * 900 + ">")
    _, raw = compose_reply(
        Reply(subject="[Ticket#1] Re: Frage", text="Danke.", html=""),
        to="it@muster.example",
        from_address="support@example.com",
        from_name="OTRS-Support",
        domain="example.com",
        now=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
        in_reply_to="<last@customer.example>",
        references=references,
    )
    reply = message_from_bytes(raw, policy=policy.default)
    cited = str(reply["References"]).split()
    assert cited[-1] == "<last@customer.example>" and cited[-2] == "<ref-499@customer.example>"
    assert len(cited) == MAX_REFERENCES + 1 and len(raw) < 4000


def test_a_german_reply_reads_back_exactly_as_written() -> None:
    from datetime import UTC, datetime
    from email import message_from_bytes, policy

    from intake.compose import compose_reply
    from intake.replies import Reply

    subject = "[Ticket#2026112710000001] Re: Störung im Büro – Übersicht lädt nicht " * 2
    text = "Guten Tag Jörg Müller,\n\nIhre Anfrage ist eingegangen. Grüße\n" + "x" * 200
    message_id, raw = compose_reply(
        Reply(subject=subject, text=text, html="<p>Grüße aus Köln</p>"),
        to="jm@firma.example",
        from_address="support@example.com",
        from_name="OTRS-Support Süd",
        domain="example.com",
        now=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
    )
    assert raw.isascii() and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    reply = message_from_bytes(raw, policy=policy.default)
    assert reply["Subject"] == subject and reply["Message-ID"] == message_id
    assert reply["From"].addresses[0].display_name == "OTRS-Support Süd"
    assert reply.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == text
    assert "Grüße aus Köln" in reply.get_body(("html",)).get_content()
    assert reply["Auto-Submitted"] == "auto-replied"


# What a quoted subject must never carry: C0 and C1 controls (ESC starts terminal sequences),
# and the bidi controls that make text read backwards (Trojan Source, CVE-2021-42574).
CONTROLS = {*map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)])}
BIDI = {
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
}


def test_the_quoted_subject_has_no_control_or_bidi_characters_in_header_or_body() -> None:
    hostile = "Rechnung\x1b[31m \u202egnuhcer\u202c \u2066fällig\u2069\u200e\u200f\u061c\x85 heute"
    reply = RENDERER.render(context(subject=hostile))
    assert reply.subject == "[Ticket#2026112810000012] Re: Rechnung[31m gnuhcer fällig heute"
    (line,) = [line for line in reply.text.splitlines() if line.startswith("Betreff:")]
    assert line.endswith(" Rechnung[31m gnuhcer fällig heute")
    assert not (CONTROLS | BIDI) & set(reply.subject + line)
    assert not BIDI & set(reply.html) and "\x1b" not in reply.html


def test_a_long_subject_is_quoted_cut_to_120_characters() -> None:
    long = "Störung " * 75  # 600 characters
    reply = RENDERER.render(context(subject=long))
    quoted = reply.subject.removeprefix("[Ticket#2026112810000012] Re: ")
    assert quoted.startswith("Störung Störung") and quoted.endswith("…") and len(quoted) <= 120
    assert quoted in reply.text and quoted in reply.html
    assert "Störung " * 16 not in reply.text + reply.html


def test_a_ticket_tag_the_sender_wrote_is_not_quoted_back() -> None:
    """Our own tag says which ticket this is; one the sender wrote may name somebody else's."""
    reply = RENDERER.render(context(subject="[Ticket#2026010110000001] RE: [ticket#7]Drucker"))
    assert reply.subject == "[Ticket#2026112810000012] RE: Drucker"
    assert "2026010110000001" not in reply.text + reply.html
    assert reply_subject("1", "[Ticket#\u202e2026010110000001]") == "[Ticket#1]"
