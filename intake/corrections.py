"""Staff decisions on priorities as training examples for the classifier."""

from __future__ import annotations

from sqlalchemy.orm import Session

from classifier.corpus import Example
from intake.db import store
from intake.domain import Priority
from intake.language import guess_language


def training_corrections(session: Session) -> list[Example]:
    """Every ticket whose priority staff decided, as a training example (latest decision)."""
    return [
        Example(
            id=f"correction-{ticket_id}",
            lang=guess_language(f"{subject} {body}"),
            style="mail",
            subject=subject,
            body=body,
            priority=Priority(priority),
            hard_case=None,
        )
        for ticket_id, subject, body, priority in store.corrected_requests(session)
    ]
