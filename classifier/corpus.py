"""Read the labelled corpus (JSON Lines) and turn a request into the classifier's input text."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from classifier.features import neutral_text
from classifier.text import new_words
from intake.domain import Priority

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpus"


@dataclass(frozen=True)
class Example:
    id: str
    lang: str
    style: str
    subject: str
    body: str
    priority: Priority
    hard_case: str | None
    service: str | None = None  # the Leistungskatalog id it calls off (catalogue: in config.yaml)
    scenario: str = ""  # rows about one situation share it: grouped folds keep them together

    @property
    def text(self) -> str:
        return classifier_text(self.subject, self.body)


def classifier_text(subject: str | None, body: str | None) -> str:
    """What the classifier reads: the subject and the customer's new words (classifier/text.py),
    without urgency words (classifier/features.py). A missing body (None) is the empty text."""
    return neutral_text(f"{subject or ''}\n{new_words(body or '')}")


def load_corpus(directory: Path = CORPUS_DIR) -> list[Example]:
    examples: list[Example] = []
    for path in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                examples.append(
                    Example(
                        id=row["id"],
                        lang=row["lang"],
                        style=row["style"],
                        subject=row.get("subject") or "",
                        body=row["body"],
                        priority=Priority(row["priority"]),
                        hard_case=row.get("hard_case"),
                        service=row.get("service"),
                        scenario=row.get("scenario") or row["id"],
                    )
                )
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: bad corpus row: {exc}") from None
    return examples


def corpus_digest(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.id}\t{e.priority}\t{e.text}\n".encode())
    return h.hexdigest()
