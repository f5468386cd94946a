"""The real model with its second head's answer fixed, for tests of what a service proposal
(or its absence, as before the service head) does downstream."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from classifier.model import PriorityModel


class ServiceModel:
    """The real model, with the second head's answer given: `service` at `confidence`."""

    def __init__(self, model: PriorityModel, service: str | None, confidence: float = 0.9):
        self.model = model
        self.service = service
        self.confidence = confidence if service is not None else None

    def predict_many(self, items: list[tuple[str | None, str]], max_chars: int = 20_000) -> Any:
        return [  # the priority head's answer stays the real one
            replace(p, service=self.service, service_confidence=self.confidence)
            for p in self.model.predict_many(items, max_chars)
        ]
