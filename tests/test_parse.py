"""Parsing mail: readable text, machine detection, and nothing ever escapes as an exception."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from intake.domain import InboundMessage, usable_address
from intake.mail.parse import MAX_DEPTH, MAX_PARTS, parse_email
from tests.support.factories import make_dsn, make_mail, many_parts_mail, nested_mail

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

CONTROLS = frozenset(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)]))  # C0, DEL, C1


def assert_header_fields_are_clean(msg: InboundMessage) -> None:
    texts = [msg.sender, msg.sender_name, msg.subject, msg.message_id or "", msg.in_reply_to or ""]
    texts += [*msg.references, *(a.filename for a in msg.attachments)]
    texts += [a.content_type for a in msg.attachments]
    assert not any(CONTROLS & set(text) for text in texts), texts
    assert msg.sender == "" or (usable_address(msg.sender) and msg.sender == msg.sender.lower())


def test_an_encoded_german_subject_and_body_are_decoded() -> None:
    raw = (
        b"From: =?iso-8859-1?q?J=F6rg_M=FCller?= <JM@Firma.example>\r\n"
        b"To: support@example.com\r\n"
        b"Subject: =?iso-8859-1?q?St=F6rung_im_B=FCro?=\r\n"
        b"Message-ID: <a1@firma.example>\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xfc\xdfe aus dem B\xfcro\r\n"
    )
    msg = parse_email(raw, NOW)
    assert msg.subject == "Störung im Büro"
    assert msg.sender == "jm@firma.example" and msg.sender_name == "Jörg Müller"
    assert msg.body == "Grüße aus dem Büro"
    assert msg.message_id == "<a1@firma.example>" and msg.raw == raw
    assert not msg.automatic_reasons and msg.parse_error is None


def test_an_html_only_mail_becomes_readable_text_without_scripts() -> None:
    raw = (
        b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{}</style></head><body><p>Das Kundenportal&nbsp;l\xc3\xa4dt nicht.</p>"
        b"<script>alert(1)</script><p>Gru&szlig;</p></body></html>"
    )
    body = parse_email(raw, NOW).body
    assert "Kundenportal" in body and "lädt nicht" in body and "Gruß" in body
    assert "alert" not in body and "<p>" not in body


def test_a_subject_with_line_breaks_is_folded_into_one_line() -> None:
    msg = parse_email(
        b"From: a@b.example\r\nSubject: Hilfe\r\n Bcc: x@evil.example\r\n\r\nText\r\n", NOW
    )
    assert "\n" not in msg.subject and "\r" not in msg.subject


def test_machine_mail_is_recognised_by_its_headers() -> None:
    cases = {
        "Auto-Submitted": "auto-replied",
        "Precedence": "bulk",
        "X-Autoreply": "yes",
        "List-Id": "<otrs-users.example>",
        "X-Loop": "support@example.com",
    }
    for header, value in cases.items():
        msg = parse_email(make_mail(headers={header: value}), NOW)
        assert msg.automatic_reasons, header
    assert parse_email(make_mail(headers={"Auto-Submitted": "no"}), NOW).automatic_reasons == ()
    assert parse_email(make_mail(sender="MAILER-DAEMON@mx.example"), NOW).automatic_reasons
    assert parse_email(make_mail(), NOW, envelope_from="").automatic_reasons


def test_a_mail_without_message_id_gets_a_stable_content_key() -> None:
    raw = b"From: a@b.example\r\nSubject: x\r\n\r\nText\r\n"
    assert parse_email(raw, NOW).dedupe_key == parse_email(raw, NOW).dedupe_key
    assert parse_email(raw, NOW).dedupe_key.startswith("sha256:")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_and_are_kept(raw: bytes) -> None:
    msg = parse_email(raw, NOW, envelope_from="x@y.example")
    assert msg.raw == raw
    assert_header_fields_are_clean(msg)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b'Content-Type: multipart/mixed; boundary="b"\r\n',
                b"--b\r\n",
                b"--b--\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b'Content-Type: text/plain; charset="x-unknown"\r\n',
                b"Subject: =?utf-8?q?=E2=28?=\r\n",
                b"Subject: =?bogus?B?!!!?=\r\n",
                b"From: <>\r\n",
                b"Content-Type: text/html\r\n",
                b"\r\n",
                b"\xff\xfe\x00",
                b"=?utf-7?B?K2ZmZg==?=\r\n",
                b'From: "Broken <a@b\r\n',
                b"Message-ID: <<>>\r\n",
                b"QmFzZTY0IGJvZHk=\r\n",
                # hostile and mislabelled
                b"---- Original email message ----\r\n",
                b"\xef\xbb\xbf",
                b"From: it\x1c@muster.example\r\n",
                b"From: =?utf-8?q?a=0D=0A=00?= <a@b.example>\r\n",
                b"From: <a\x1b[b@c.example>\r\n",
                b"Subject: =?gb2312?B?1uzpRrv5?= =?iso-2022-jp?B?7uCLtIdA?=\r\n",
                b"Message-ID: <" + b"x" * 1000 + b"@y.example>\r\n",
                b"Content-Type: text/plain; charset=iso-2022-jp\r\n",
                b"\x1b$B%F%9%H-!\x1b(I1\x1b$(D\r\n",
                b"Content-Type: text/plain; charset=gb2312\r\n\r\n\xd6\xec\xe9F\r\n",
                b'Content-Type: multipart/alternative; boundary="b"\r\n',
                b"Content-Disposition: attachment; filename*=utf-8''a%0D%00.txt\r\n",
            ]
        ),
        max_size=30,
    )
)
def test_mutated_mime_never_raises(parts: list[bytes]) -> None:
    raw = b"".join(parts)
    msg = parse_email(raw, NOW)
    assert msg.raw == raw
    assert_header_fields_are_clean(msg)


def test_attachments_keep_name_and_type_also_nested_encoded_and_winmail() -> None:
    from email.message import EmailMessage

    inner = EmailMessage()
    inner["From"] = "daemon@x.example"
    inner["Subject"] = "Fehler"
    inner.set_content("Daemon gestoppt")
    msg = EmailMessage()
    msg["From"] = "it@muster.example"
    msg["Subject"] = "Logs"
    msg.set_content("Anbei die Logs.")
    msg.add_attachment(
        b"%PDF-1.4", maintype="application", subtype="pdf", filename="Übersicht März.pdf"
    )
    msg.add_attachment(
        b"\x78\x9f\x3e\x22", maintype="application", subtype="ms-tnef", filename="winmail.dat"
    )
    msg.add_attachment(inner)
    parsed = parse_email(msg.as_bytes(), NOW)
    files = {(a.filename, a.content_type) for a in parsed.attachments}
    assert ("Übersicht März.pdf", "application/pdf") in files  # RFC 2231 encoded name
    assert ("winmail.dat", "application/ms-tnef") in files
    assert ("weitergeleitet.eml", "message/rfc822") in files
    assert parsed.body == "Anbei die Logs."


def test_undeclared_8bit_headers_are_read_as_utf8_or_windows_1252() -> None:
    latin = b"From: J\xf6rg <j@x.example>\r\nSubject: St\xf6rung im B\xfcro\r\n\r\nText\r\n"
    utf8 = "From: a@b.example\r\nSubject: Störung – dringend\r\n\r\nText\r\n".encode()
    assert parse_email(latin, NOW).subject == "Störung im Büro"
    assert parse_email(latin, NOW).sender_name == "Jörg"
    assert parse_email(utf8, NOW).subject == "Störung – dringend"


def test_a_utf7_body_from_exchange_is_decoded() -> None:
    raw = b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-7\r\n\r\nSt+APY-rung\r\n"
    assert parse_email(raw, NOW).body == "Störung"


def test_a_header_in_a_superset_of_its_declared_charset_costs_neither_header_nor_body() -> None:
    # 镕 is GBK, not GB2312; 髙 and ① are CP932, not Shift_JIS/ISO-2022-JP: labels mailers get wrong.
    raw = (
        b"From: =?iso-2022-jp?B?7uCLtIdA?= <t@x.example>\r\n"  # CP932 bytes of "髙橋①"
        b"Subject: =?gb2312?B?1uzpRrv5tcS158TU?=\r\n"  # GBK bytes of "朱镕基的电脑"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Hallo Welt\r\n"
    )
    msg = parse_email(raw, NOW)
    assert msg.subject == "朱镕基的电脑" and msg.sender_name == "髙橋①"
    assert msg.sender == "t@x.example" and msg.body == "Hallo Welt" and msg.parse_error is None


def test_a_header_that_no_charset_fits_still_leaves_the_rest_readable() -> None:
    raw = (
        b"From: a@b.example\r\n"
        b"Subject: =?bogus?B?!!!?= und =?utf-8?B?w7Z?= und =?us-ascii?Q?Gr=FC=DFe?=\r\n\r\n"
        b"Text\r\n"
    )
    msg = parse_email(raw, NOW)
    assert msg.subject == "und ö und Grüße" and msg.body == "Text"


def test_body_parts_whose_bytes_do_not_fit_their_label_are_read_with_the_superset() -> None:
    def body(charset: bytes, data: bytes) -> str:
        raw = b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=" + charset
        return parse_email(raw + b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + data, NOW).body

    gbk = b"\xd6\xec\xe9F\xbb\xf9\xb5\xc4\xb5\xe7\xc4\xd4\xbb\xb5\xc1\xcb"
    assert body(b"gb2312", gbk) == "朱镕基的电脑坏了"
    cp932 = b"\x87@\x94\xd4\x82\xcc\xee\xe0\x8b\xb4\x82\xc5\x82\xb7"
    assert body(b"shift_jis", cp932) == "①番の髙橋です"
    assert body(b"iso-8859-1", b"\x93Gr\xfc\xdfe\x94 \x96 \x805") == "“Grüße” – €5"
    assert body(b"us-ascii", "Grüße".encode()) == "Grüße"


def test_an_iso_2022_jp_body_becomes_japanese_text_also_with_microsoft_extensions() -> None:
    # JIS X 0208 "テスト", NEC row 13 "①" and half-width "ｱ" (ESC ( I): CP50221, as Outlook sends.
    raw = (
        b"From: a@b.example\r\nSubject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\n"
        b"Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        b"\x1b$B%F%9%H-!\x1b(I1\x1b(B ok\r\n"
    )
    msg = parse_email(raw, NOW)
    assert msg.subject == "テスト" and msg.body == "テスト①ｱ ok"
    # RFC 1468 mail from before MIME labels nothing; the escapes say what it is.
    unlabelled = b"From: a@b.example\r\nSubject: x\r\n\r\n\x1b$B%F%9%H\x1b(B\r\n"
    assert parse_email(unlabelled, NOW).body == "テスト"


def test_inline_text_parts_around_an_image_are_all_kept_in_order() -> None:
    # Apple Mail: text, a picture placed in the text, more text; a real attachment at the end.
    raw = (
        b'From: a@b.example\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary="a"\r\n\r\n'
        b"--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nErster Teil\r\n"
        b'--a\r\nContent-Type: image/png; name="bild.png"\r\n'
        b'Content-Disposition: inline; filename="bild.png"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b"--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nZweiter Teil\r\n"
        b"--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Dritter&nbsp;Teil</p>\r\n"
        b"--a\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nlog\r\n"
        b'--a\r\nContent-Type: text/plain; name="notiz.txt"\r\n\r\nNotiz\r\n'
        b"--a--\r\n"
    )
    msg = parse_email(raw, NOW)
    assert msg.body == "Erster Teil\n\nZweiter Teil\n\nDritter Teil"
    names = [(a.filename, a.content_type) for a in msg.attachments]
    assert names == [
        ("bild.png", "image/png"),
        ("anhang", "text/plain"),
        ("notiz.txt", "text/plain"),
    ]


def test_of_two_alternatives_only_the_plain_one_is_the_body() -> None:
    raw = (
        b'From: a@b.example\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n'
        b'--m\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        b"--alt\r\nContent-Type: text/plain\r\n\r\nHallo *Welt*\r\n"
        b'--alt\r\nContent-Type: multipart/related; boundary="rel"\r\n\r\n'
        b"--rel\r\nContent-Type: text/html\r\n\r\n<p>Hallo <b>Welt</b></p>\r\n"
        b"--rel\r\nContent-Type: image/gif\r\nContent-ID: <logo>\r\n\r\nGIF89a\r\n"
        b"--rel--\r\n--alt--\r\n"
        b"--m\r\nContent-Type: text/plain\r\n\r\nNachtrag\r\n"
        b"--m--\r\n"
    )
    assert parse_email(raw, NOW).body == "Hallo *Welt*\n\nNachtrag"
    html_only = raw.replace(b"--alt\r\nContent-Type: text/plain\r\n\r\nHallo *Welt*\r\n", b"")
    assert parse_email(html_only, NOW).body == "Hallo Welt\n\nNachtrag"


def test_lines_before_the_headers_are_skipped_and_the_bytes_kept_as_received() -> None:
    mail = b"From: Kunde <k@x.example>\r\nSubject: Hilfe\r\n\r\nText\r\n"
    for preamble in (
        b"---- Original email message ----\r\n",  # an export
        b"---- Original email message ----\r\n\r\n",
        b"\r\n",
        b">From k@x.example Mon Jan  5 09:00:00 2026\r\n",  # an mbox line, escaped
        b"Export\r\nFrom k@x.example Mon Jan  5 09:00:00 2026\r\n",
        b"\xef\xbb\xbf",  # a byte order mark from an editor
    ):
        msg = parse_email(preamble + mail, NOW)
        assert (msg.sender, msg.subject, msg.body) == ("k@x.example", "Hilfe", "Text"), preamble
        assert msg.raw == preamble + mail


def test_a_text_without_headers_keeps_all_its_lines() -> None:
    # "Seit: heute früh" looks like a header; skipping to it would cost the lines before.
    text = b"Hallo,\r\n\r\nder Server steht.\r\nSeit: heute fr\xc3\xbch\r\n"
    assert parse_email(text, NOW).body == "Hallo,\n\nder Server steht.\nSeit: heute früh"


def test_a_sender_with_control_characters_is_kept_readable_but_never_answered() -> None:
    for value in (
        b"it\x1c@muster.example",
        b"it\x00@muster.example",
        b"Erika <it\x7f@muster.example>",
        b"it\xc2\x85@muster.example",  # C1 NEL in UTF-8
        b"=?utf-8?q?it=0D?=@muster.example",
        b"<it\x1b[31m@muster.example>",  # getaddresses would find "31m@muster.example"
        b"Erika\x07 <it@muster.example>",  # a raw control anywhere: the header is not trusted
        "J\u00f6rg <j\u00f6rg@muster.example>".encode(),  # no SMTPUTF8 in the outbox
    ):
        msg = parse_email(b"From: " + value + b"\r\nSubject: x\r\n\r\nText\r\n", NOW, "a@b.example")
        assert msg.sender == "" and "muster.example" in msg.sender_name, value
        assert "\ufffd" in msg.sender_name or "ö" in msg.sender_name  # shown, not hidden
        assert msg.body == "Text" and msg.parse_error is None
        assert_header_fields_are_clean(msg)


def test_control_characters_are_taken_out_of_names_subjects_ids_and_filenames() -> None:
    raw = (
        b"From: =?utf-8?q?Eve=0D=0ABcc=3A_x=00=07?= Mallory <e@x.example>\r\n"
        b"Subject: Hilfe\x00 \x1b[31mrot\x7f =?utf-8?q?=C2=9B_und_=0D=0A?= Ende\r\n"
        b"Message-ID: <a\x01b@x.example>\r\n"
        b"In-Reply-To: <c\x7fd@x.example> <ok@x.example>\r\n"
        b"References: <e\x1cf@x.example> <ok@x.example>\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nText\r\n"
        b"--b\r\nContent-Type: application/p\x01df\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''a%0D%0Ab%00c.pdf\r\n\r\nx\r\n"
        b"--b--\r\n"
    )
    msg = parse_email(raw, NOW)
    assert_header_fields_are_clean(msg)
    assert msg.sender == "e@x.example" and msg.sender_name == "Eve Bcc: x Mallory"
    assert msg.subject == "Hilfe [31mrot und Ende"
    assert msg.message_id is None and msg.in_reply_to == "<ok@x.example>"
    assert msg.references == ("<ok@x.example>",)
    assert msg.attachments[0].filename == "a bc.pdf"


def test_very_long_header_values_parse_and_overlong_ids_are_no_ids() -> None:
    long_id = b"<" + b"x" * 2000 + b"@x.example>"
    raw = (
        b"From: " + b"y" * 1000 + b"@x.example\r\n"
        b"Subject: " + b"Betreff " * 75 + b"\r\n"
        b"Message-ID: " + long_id + b"\r\nIn-Reply-To: " + long_id + b"\r\n"
        b"References: " + long_id + b" <ok@x.example>\r\n\r\nText\r\n"
    )
    msg = parse_email(raw, NOW)
    assert_header_fields_are_clean(msg)
    assert msg.sender == "" and msg.sender_name.startswith("yyy") and len(msg.sender_name) < 300
    assert len(msg.subject) == 600 - 1 and msg.body == "Text"
    assert msg.message_id is None and msg.in_reply_to is None
    assert msg.references == ("<ok@x.example>",)


def test_usable_address_accepts_only_what_a_reply_can_go_to() -> None:
    assert usable_address("it@muster.example") and usable_address("o'neil+tag@x.example")
    for value in (
        "",
        "it",
        "@muster.example",
        "it@",
        "it\x1c@muster.example",
        "it @muster.example",
        "a@b@c.example",
        "=?utf-8?q?it=0D?=@muster.example",
        '"a b"@x.example',
        "jörg@x.example",  # the outbox speaks no SMTPUTF8
        "x" * 64 + "@" + "d" * 189 + ".example",  # 255 characters
    ):
        assert not usable_address(value), value


def test_a_delivery_report_cites_what_it_returns_and_a_bounded_number_of_ids() -> None:
    returned = "From: support@example.com\nMessage-ID: <ours@example.com>\nIn-Reply-To: <a@b.x>\n"
    references = " ".join(f"<n{i}@evil.example>" for i in range(500))
    msg = parse_email(
        make_dsn(
            "it@muster.example",
            returned=returned,
            original_message_id="<orig@example.com>",
            headers={"In-Reply-To": "<irt@example.com>", "References": references},
        ),
        NOW,
    )
    assert msg.bounced_recipients == ("it@muster.example",)
    ids = msg.report_message_ids
    assert ids[:3] == ("<irt@example.com>", "<orig@example.com>", "<ours@example.com>")
    assert "<a@b.x>" not in ids  # the returned message's threading is its author's word
    assert ids[3] == "<n499@evil.example>" and len(ids) == 20  # newest references first
    as_message = make_dsn("x@muster.example", returned=returned, returned_as="message/rfc822")
    assert parse_email(as_message, NOW).report_message_ids == ("<ours@example.com>",)
    assert parse_email(make_mail(headers={"In-Reply-To": "<m@x>"}), NOW).report_message_ids == ()


def test_a_mail_of_5000_parts_is_read_up_to_the_limit_and_says_so() -> None:
    raw = many_parts_mail(5_000)
    msg = parse_email(raw, NOW)
    assert msg.raw == raw and msg.sender == "it@muster.example" and msg.subject == "Viele Teile"
    # The root is one part: its first MAX_PARTS - 1 children are read, no more.
    assert f"Teil {MAX_PARTS - 1:05d}." in msg.body and f"Teil {MAX_PARTS:05d}." not in msg.body
    assert "Teil 05000." not in msg.body
    assert msg.parse_error is not None and "Nur teilweise gelesen" in msg.parse_error
    assert f"mehr als {MAX_PARTS:,} MIME-Teile".replace(",", ".") in msg.parse_error


def test_parts_beyond_the_limit_cost_no_time() -> None:
    """50,000 parts (2 MB) took half a minute to parse; what is not read costs nothing."""
    raw = many_parts_mail(50_000)
    started = time.perf_counter()
    msg = parse_email(raw, NOW)
    assert time.perf_counter() - started < 10
    assert msg.parse_error is not None and "Nur teilweise gelesen" in msg.parse_error


def test_a_mail_nested_200_levels_deep_is_read_to_the_limit_and_says_so() -> None:
    raw = nested_mail(200)
    msg = parse_email(raw, NOW)
    assert msg.raw == raw and msg.subject == "Tief verschachtelt"
    assert msg.body == "oben"  # "ganz innen" lies 200 levels down, beyond the limit
    assert msg.parse_error is not None and "Nur teilweise gelesen" in msg.parse_error
    assert f"mehr als {MAX_DEPTH} Ebenen" in msg.parse_error


def test_nesting_deeper_than_python_recurses_is_still_read_to_the_limit() -> None:
    """The standard library's parser recurses per level: at 1,000 levels it raised
    RecursionError and the whole mail was unreadable."""
    raw = nested_mail(5_000)
    msg = parse_email(raw, NOW)
    assert msg.raw == raw and msg.subject == "Tief verschachtelt" and msg.body == "oben"
    assert msg.parse_error is not None and "Nur teilweise gelesen" in msg.parse_error
    assert "RecursionError" not in msg.parse_error


def test_a_mail_within_the_limits_is_read_whole() -> None:
    assert parse_email(nested_mail(MAX_DEPTH), NOW).body == "oben\n\nganz innen"
    within = parse_email(many_parts_mail(MAX_PARTS - 1), NOW)
    assert within.parse_error is None and f"Teil {MAX_PARTS - 1:05d}." in within.body
