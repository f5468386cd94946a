"""Staff decisions on priorities and services as training examples for the classifier."""

from __future__ import annotations

from sqlalchemy.orm import Session

from classifier.corpus import Example
from intake.db import store
from intake.domain import Priority
from intake.language import guess_language


def training_corrections(session: Session) -> list[Example]:
    """Every customer message whose priority or service staff decided, as a training example
    (the latest decision about that text); `service` is None where staff decided none."""
    return [
        Example(
            id=f"correction-{row.ticket_id}-{row.message_id}",
            lang=guess_language(f"{row.subject} {row.body}"),
            style="mail",
            subject=row.subject,
            body=row.body,
            priority=Priority(row.priority),
            hard_case=None,
            service=row.service,
        )
        for row in store.corrected_requests(session)
    ]
