"""Load a trained model safely and turn its probabilities into an explained, cautious proposal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.pipeline import Pipeline

from classifier.corpus import classifier_text
from classifier.features import find_criteria
from intake.domain import Explanation, Prediction, Priority, WeightedTerm

# Types beyond scikit-learn's own that a model file may contain; reviewed by hand. Anything
# else in a file is refused, so a crafted model cannot make the loader import arbitrary code.
ALLOWED_TYPES = frozenset({"classifier.features.CriteriaFeatures"})

ORDER = tuple(Priority)  # Kritisch, Hoch, Mittel, Niedrig


class ModelRefused(Exception):
    """The model file holds types nobody reviewed, or cannot be read."""


def cost_matrix() -> np.ndarray:
    """cost[true][proposed]: one per level of error, but three per level for proposing less than
    Kritisch for a critical request: a possibly critical request is raised, not lowered."""
    n = len(ORDER)
    cost = np.zeros((n, n))
    for t in range(n):
        for p in range(n):
            if p < t:
                cost[t, p] = t - p
            elif p > t:
                cost[t, p] = (p - t) * (3.0 if t == 0 else 1.0)
    return cost


COST = cost_matrix()
POSSIBLY_CRITICAL = 0.2  # P(Kritisch) from which a non-critical proposal still goes to review


def decide(probabilities: np.ndarray) -> Priority:
    """The priority with the least expected cost under COST."""
    expected = probabilities @ COST
    return ORDER[int(np.argmin(expected))]


@dataclass
class PriorityModel:
    pipeline: Pipeline
    version: str
    review_below: float = 0.6
    card: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path, review_below: float = 0.6) -> PriorityModel:
        try:
            untrusted = set(sio.get_untrusted_types(file=path))
        except Exception as exc:  # a corrupt zip or schema: refuse, never guess
            raise ModelRefused(f"{path}: not a readable model file ({exc})") from None
        unknown = {t for t in untrusted if t not in ALLOWED_TYPES and not t.startswith("sklearn.")}
        if unknown:
            raise ModelRefused(f"{path}: refusing model with unreviewed types: {sorted(unknown)}")
        pipeline = sio.load(path, trusted=sorted(untrusted))
        if not isinstance(pipeline, Pipeline):
            raise ModelRefused(f"{path}: expected a scikit-learn Pipeline")
        card_path = path.with_suffix(".json")
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else {}
        version = str(card.get("version", path.stem))
        return cls(pipeline=pipeline, version=version, review_below=review_below, card=card)

    def predict(self, subject: str | None, body: str) -> Prediction:
        return self.predict_many([(subject, body)])[0]

    def predict_many(self, items: list[tuple[str | None, str]]) -> list[Prediction]:
        texts = [classifier_text(s, b) for s, b in items]
        probs = self._probabilities(texts)
        return [self._prediction(text, p) for text, p in zip(texts, probs, strict=True)]

    def _probabilities(self, texts: list[str]) -> np.ndarray:
        raw = self.pipeline.predict_proba(texts)
        classes = [Priority(c) for c in self.pipeline.classes_]
        return np.asarray(raw)[:, [classes.index(p) for p in ORDER]]

    def _prediction(self, text: str, probs: np.ndarray) -> Prediction:
        priority = decide(probs)
        confidence = float(probs[ORDER.index(priority)])
        possibly_critical = priority is not Priority.KRITISCH and bool(probs[0] >= POSSIBLY_CRITICAL)
        return Prediction(
            priority=priority,
            confidence=round(confidence, 4),
            probabilities={p: round(float(v), 4) for p, v in zip(ORDER, probs, strict=True)},
            model_version=self.version,
            needs_review=confidence < self.review_below or possibly_critical,
            explanation=Explanation(
                criteria=tuple(find_criteria(text)), terms=self._top_terms(text, priority)
            ),
        )

    def _top_terms(self, text: str, priority: Priority, limit: int = 8) -> tuple[WeightedTerm, ...]:
        """The word n-grams and criteria that pushed hardest towards the proposed priority."""
        features = self.pipeline.named_steps["features"]
        estimator = self.pipeline.named_steps["model"].calibrated_classifiers_[0].estimator
        row = features.transform([text]).tocsr()
        names = features.get_feature_names_out()
        klass = list(estimator.classes_).index(priority.value)
        coef = estimator.coef_[klass]
        scored = [
            (str(names[i]), float(v * coef[i]))
            for i, v in zip(row.indices, row.data, strict=True)
            if not str(names[i]).startswith("chars__")
        ]
        scored.sort(key=lambda item: item[1], reverse=True)
        return tuple(
            WeightedTerm(_readable(name), round(weight, 3))
            for name, weight in scored[:limit]
            if weight > 0
        )


def _readable(feature: str) -> str:
    prefix, _, rest = feature.partition("__")
    return rest.removeprefix("criterion:") if prefix == "criteria" else rest
