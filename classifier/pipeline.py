"""The scikit-learn pipeline: word and character n-grams plus the offer's criteria, calibrated."""

from __future__ import annotations

from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from classifier.features import CriteriaFeatures


def build_pipeline(seed: int = 13) -> Pipeline:
    features = FeatureUnion(
        [
            (
                "words",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=(1, 2),
                    min_df=2,
                    sublinear_tf=True,
                    max_features=20000,
                ),
            ),
            (
                "chars",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(3, 5),
                    min_df=2,
                    sublinear_tf=True,
                    max_features=20000,
                ),
            ),
            ("criteria", CriteriaFeatures()),
        ]
    )
    model = LogisticRegression(C=8.0, max_iter=3000, class_weight="balanced", random_state=seed)
    # One model fitted on all data, calibrated on cross-validated predictions (ensemble=False),
    # so the explanation reads one set of weights.
    calibrated = CalibratedClassifierCV(model, method="sigmoid", cv=5, ensemble=False)
    return Pipeline([("features", features), ("model", calibrated)])
