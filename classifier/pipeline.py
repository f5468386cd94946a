"""The scikit-learn pipeline: word and character n-grams plus the offer's criteria, calibrated.

`classifier/compare.py` measures the variants below on grouped cross-validation; the chosen
one is `build_pipeline()`'s default (numbers in docs/EVALUATION.md)."""

from __future__ import annotations

from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from classifier.features import CriteriaFeatures

FEATURES = ("words+charwb35", "words+char25")
MODELS = ("lr", "svc")
DEFAULT = ("words+charwb35", "svc")  # chosen by classifier.compare (docs/EVALUATION.md)


def build_features(variant: str = DEFAULT[0]) -> FeatureUnion:
    if variant == "words+charwb35":  # the pipeline shipped before issue #15
        chars = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True, max_features=20000
        )
    elif variant == "words+char25":
        chars = TfidfVectorizer(
            analyzer="char", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=40000
        )
    else:
        raise ValueError(f"unknown feature variant {variant!r}")
    words = TfidfVectorizer(
        analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=20000
    )
    return FeatureUnion([("words", words), ("chars", chars), ("criteria", CriteriaFeatures())])


def build_model(variant: str = DEFAULT[1], seed: int = 13) -> CalibratedClassifierCV:
    """One model fitted on all data, calibrated on cross-validated predictions (ensemble=False),
    so the explanation reads one set of weights."""
    base: Any
    if variant == "lr":
        base = LogisticRegression(C=8.0, max_iter=3000, class_weight="balanced", random_state=seed)
    elif variant == "svc":
        base = LinearSVC(C=0.5, class_weight="balanced", random_state=seed)
    else:
        raise ValueError(f"unknown model variant {variant!r}")
    return CalibratedClassifierCV(base, method="sigmoid", cv=5, ensemble=False)


def build_pipeline(seed: int = 13, features: str = DEFAULT[0], model: str = DEFAULT[1]) -> Pipeline:
    return Pipeline([("features", build_features(features)), ("model", build_model(model, seed))])
