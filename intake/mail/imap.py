"""Poll an IMAP mailbox (imap-tools): fetch without marking seen, store, then flag or move.

Never relies on \\Seen (another client may set it): every UID in the folder that is not yet
recorded for the current UIDVALIDITY is fetched with BODY.PEEK. Storing is idempotent by
Message-ID (or content hash), so a crash between storing and flagging, a restart in the middle
of a batch or a UIDVALIDITY change re-fetches at most, and never doubles a ticket.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessageFlags
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from intake.accept import Acceptor, Arrival, store_arrival
from intake.clock import Clock
from intake.config import ImapConfig
from intake.db.leadership import leadership
from intake.db.tables import ImapUid
from intake.domain import Channel

log = logging.getLogger("intake.imap")
IDLE_RECHECK_SECONDS = 5.0  # how long one IDLE waits before the loop looks at `stop` again


class ImapPoller:
    def __init__(
        self,
        cfg: ImapConfig,
        acceptor: Acceptor,
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        self.cfg = cfg
        self.acceptor = acceptor
        self.sessions = sessions
        self.clock = clock
        self.account = f"{cfg.username}@{cfg.host}:{cfg.port}/{cfg.folder}"

    @contextmanager
    def _mailbox(self) -> Iterator[BaseMailBox]:
        cfg = self.cfg
        box: BaseMailBox
        if cfg.security == "ssl":
            box = MailBox(cfg.host, cfg.port)
        elif cfg.security == "starttls":
            box = MailBoxStartTls(cfg.host, cfg.port)
        else:
            box = MailBoxUnencrypted(cfg.host, cfg.port)
        assert cfg.password is not None
        with box.login(cfg.username, cfg.password.get_secret_value(), initial_folder=cfg.folder):
            yield box

    def poll_once(self) -> int:
        """Store every new message of the folder; return how many were taken (new or not)."""
        with self._mailbox() as box:
            return self._poll(box)

    def _poll(self, box: BaseMailBox) -> int:
        status = box.folder.status(self.cfg.folder, ["UIDVALIDITY"])
        uidvalidity = int(status["UIDVALIDITY"])
        known = self._known(uidvalidity)
        present = box.uids("ALL")
        pending = [uid for uid in present if int(uid) not in known]
        for uid in pending:
            self._take(box, uidvalidity, uid)
        self._tidy(box, [uid for uid in present if int(uid) in known])
        return len(pending)

    def _tidy(self, box: BaseMailBox, stored: list[str]) -> None:
        """Mail stored by a run that died before it could flag or move it: do that now (the
        UID is recorded with the mail, so it is never fetched again)."""
        if not stored:
            return
        if self.cfg.done_folder:
            box.move(stored, self.cfg.done_folder)
            return
        unseen = set(box.uids("UNSEEN"))
        if left := [uid for uid in stored if uid in unseen]:
            box.flag(left, MailMessageFlags.SEEN, True)

    def _known(self, uidvalidity: int) -> set[int]:
        with self.sessions() as session:
            return set(
                session.scalars(
                    select(ImapUid.uid).where(
                        ImapUid.account == self.account, ImapUid.uidvalidity == uidvalidity
                    )
                )
            )

    def _take(self, box: BaseMailBox, uidvalidity: int, uid: str) -> None:
        typ, data = box.client.uid("FETCH", uid, "(BODY.PEEK[])")
        raw = next((part[1] for part in data if isinstance(part, tuple)), None)
        if typ != "OK" or raw is None:
            log.warning("imap %s: UID %s vanished before it could be fetched", self.account, uid)
            return
        queue_id = self._store(bytes(raw), uidvalidity, int(uid))  # commits, or raises
        # Only after the commit: the mailbox shows the message as handled.
        if self.cfg.done_folder:
            box.move(uid, self.cfg.done_folder)
        else:
            box.flag(uid, MailMessageFlags.SEEN, True)
        log.info("imap %s: UID %s -> queued as %s", self.account, uid, queue_id)

    def _store(self, raw: bytes, uidvalidity: int, uid: int) -> str | None:
        """The raw mail and its UID in one short transaction; None when another poller
        stored this UID first."""
        now = self.clock()
        try:
            with self.sessions.begin() as session:
                queue_id = store_arrival(
                    session, Arrival(channel=Channel.EMAIL, raw=raw, received_at=now)
                )
                session.add(
                    ImapUid(account=self.account, uidvalidity=uidvalidity, uid=uid, created_at=now)
                )
        except IntegrityError:
            return None  # another poller recorded it first
        self.acceptor.accepted()
        return queue_id

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set. Where the server offers IDLE it wakes on new mail; otherwise
        it polls every poll_seconds. A failed connection is logged and retried. With several
        instances on PostgreSQL only the one holding the mailbox's advisory lock polls; when it
        dies its connection closes, the lock goes, and another takes over."""
        while not stop.is_set():
            try:
                with leadership(self.sessions, f"imap:{self.account}") as leader:
                    if not leader:
                        stop.wait(self.cfg.poll_seconds)
                        continue
                    self._serve_mailbox(stop)
            except Exception:
                log.exception(
                    "imap %s: poll failed; retrying in %.0f s", self.account, self.cfg.poll_seconds
                )
                stop.wait(self.cfg.poll_seconds)

    def _serve_mailbox(self, stop: threading.Event) -> None:
        with self._mailbox() as box:
            idle = "IDLE" in box.client.capabilities
            while not stop.is_set():
                self._poll(box)
                if idle:
                    box.idle.wait(timeout=min(self.cfg.poll_seconds, IDLE_RECHECK_SECONDS))
                else:
                    stop.wait(self.cfg.poll_seconds)
