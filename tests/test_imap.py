"""The IMAP poller against a real Dovecot: nothing lost, nothing doubled, \\Seen not trusted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from imap_tools import AND, MailBoxUnencrypted, MailMessageFlags
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from intake.accept import Acceptor, Arrival
from intake.config import Config, ImapConfig
from intake.domain import Channel
from intake.mail.imap import ImapPoller
from tests.support.database import count
from tests.support.factories import make_mail
from tests.support.servers import Dovecot, triage_all

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Iterator[MailBoxUnencrypted]:
    with MailBoxUnencrypted("127.0.0.1", dovecot.port).login(dovecot.user, dovecot.password) as box:
        for folder in ("INBOX", "Done"):  # a clean mailbox for every test
            box.folder.set(folder)
            if uids := box.uids("ALL"):
                box.delete(uids)
        box.folder.set("INBOX")
        yield box


def poller(
    dovecot: Dovecot,
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
    **kw: object,
) -> ImapPoller:
    imap = ImapConfig(
        enabled=True,
        host="127.0.0.1",
        port=dovecot.port,
        security="none",
        username=dovecot.user,
        password=dovecot.password,
        poll_seconds=0.1,
        **kw,
    )  # type: ignore[arg-type]
    return ImapPoller(imap, Acceptor(sessions), sessions, lambda: NOW)


def test_every_message_is_stored_once_even_one_another_client_already_read(
    dovecot: Dovecot,
    mailbox: MailBoxUnencrypted,
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
) -> None:
    mailbox.append(make_mail(subject="Erste Frage", body="Wie lege ich eine Queue an?"), "INBOX")
    mailbox.append(
        make_mail(subject="Zweite Frage", body="Wie ändere ich eine Signatur?"),
        "INBOX",
        flag_set=[MailMessageFlags.SEEN],
    )  # read in Outlook before we polled
    p = poller(dovecot, cfg, sessions, model)
    assert p.poll_once() == 2
    assert count(sessions, "inbox") == 2  # stored before flagged; triage follows
    assert triage_all(cfg, sessions, model) == 2
    assert count(sessions, "tickets") == 2 and count(sessions, "outbox") == 2
    assert all(
        MailMessageFlags.SEEN in m.flags for m in mailbox.fetch(mark_seen=False, headers_only=True)
    )
    assert p.poll_once() == 0
    assert count(sessions, "tickets") == 2


def test_a_crash_between_storing_and_flagging_does_not_double_the_ticket(
    dovecot: Dovecot,
    mailbox: MailBoxUnencrypted,
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
) -> None:
    raw = make_mail(subject="Drucker", body="Der PDF-Druck geht bei einem Kollegen nicht.")
    mailbox.append(raw, "INBOX")
    # Stored once before, by a run that recorded no UID (or by SMTP): a second copy is stored,
    # and triage recognises it by its Message-ID.
    Acceptor(sessions).accept(Arrival(Channel.EMAIL, raw, NOW))
    assert poller(dovecot, cfg, sessions, model).poll_once() == 1
    assert triage_all(cfg, sessions, model) == 2
    assert count(sessions, "tickets") == 1 and count(sessions, "messages", "direction = 'in'") == 1


def test_mail_stored_by_a_run_that_died_before_flagging_is_flagged_and_not_fetched_again(
    dovecot: Dovecot,
    mailbox: MailBoxUnencrypted,
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
) -> None:
    mailbox.append(make_mail(subject="Frage", body="Wie sichere ich Znuny?"), "INBOX")
    p = poller(dovecot, cfg, sessions, model)
    (uid,) = mailbox.uids("ALL")
    status = mailbox.folder.status("INBOX", ["UIDVALIDITY"])
    # The run stored the mail with its UID, then died before it could flag it.
    raw = next(iter(mailbox.fetch(mark_seen=False))).obj.as_bytes()
    assert p._store(raw, int(status["UIDVALIDITY"]), int(uid)) is not None
    assert p.poll_once() == 0  # nothing fetched again ...
    assert all(
        MailMessageFlags.SEEN in m.flags for m in mailbox.fetch(mark_seen=False)
    )  # ... but flagged
    assert count(sessions, "inbox") == 1


def test_a_uidvalidity_change_refetches_but_creates_nothing_new(
    dovecot: Dovecot,
    mailbox: MailBoxUnencrypted,
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
) -> None:
    mailbox.append(make_mail(subject="Frage", body="Wie exportiere ich Statistiken?"), "INBOX")
    p = poller(dovecot, cfg, sessions, model)
    p.poll_once()
    with sessions.begin() as session:  # as if the server had renumbered the mailbox
        session.execute(text("update imap_uids set uidvalidity = uidvalidity + 1"))
    assert p.poll_once() == 1
    triage_all(cfg, sessions, model)
    assert count(sessions, "tickets") == 1


def test_with_a_done_folder_stored_mail_is_moved_there(
    dovecot: Dovecot,
    mailbox: MailBoxUnencrypted,
    cfg: Config,
    sessions: sessionmaker[Session],
    model: PriorityModel,
) -> None:
    mailbox.append(make_mail(subject="Frage", body="Wie sichere ich die Datenbank?"), "INBOX")
    poller(dovecot, cfg, sessions, model, done_folder="Done").poll_once()
    mailbox.folder.set("INBOX")  # re-select to see the other session's move
    assert mailbox.uids("ALL") == []
    mailbox.folder.set("Done")
    assert [m.subject for m in mailbox.fetch(AND(all=True), mark_seen=False)] == ["Frage"]
    assert count(sessions, "inbox") == 1


def test_intake_serve_polls_the_mailbox_and_answers_within_seconds(
    dovecot: Dovecot,
    mailbox: MailBoxUnencrypted,
    tmp_path,
    db_url: str,
    sessions: sessionmaker[Session],
    model: PriorityModel,
) -> None:  # type: ignore[no-untyped-def]
    import time

    from tests.support.config import make_config
    from tests.support.servers import AppThread, wait_for_files

    cfg = make_config(
        tmp_path,
        db_url,
        INTAKE_IMAP__ENABLED="true",
        INTAKE_IMAP__HOST="127.0.0.1",
        INTAKE_IMAP__PORT=str(dovecot.port),
        INTAKE_IMAP__SECURITY="none",
        INTAKE_IMAP__USERNAME=dovecot.user,
        INTAKE_IMAP__PASSWORD=dovecot.password,
        INTAKE_IMAP__POLL_SECONDS="30",
    )
    with AppThread(cfg, model):
        time.sleep(0.5)  # the poller is idling now; new mail must wake it (IDLE), not the 30 s poll
        mailbox.append(make_mail(subject="Über IMAP", body="Wie lege ich eine Queue an?"), "INBOX")
        # Under the 5 s IDLE re-check and far under the 30 s poll: only IDLE can be this quick.
        replies = wait_for_files(tmp_path / "maildir" / "new", 1, timeout=4)
    assert len(replies) == 1
    assert count(sessions, "tickets") == 1
