"""Load a trained model safely and turn its probabilities into an explained, cautious proposal."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import weakref
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import sklearn
import skops.io as sio
from scipy import sparse
from scipy.special import expit
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

from classifier.corpus import classifier_text
from classifier.features import URGENCY, has_security_incident, has_urgency
from intake.domain import (
    POSSIBLY_CRITICAL,
    SECURITY_CRITERION,
    Explanation,
    Prediction,
    Priority,
    WeightedTerm,
)

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
PLAUSIBLE = 0.1  # a priority the model gives less than this is never proposed


def decide(probabilities: np.ndarray) -> Priority:
    """The plausible priority with the least expected cost under COST.

    Only priorities with some probability are candidates: when the model is torn between Hoch
    and Niedrig, proposing the unlikely Mittel "in between" would puzzle staff."""
    expected = probabilities @ COST
    expected[probabilities < min(PLAUSIBLE, float(probabilities.max()))] = np.inf
    return ORDER[int(np.argmin(expected))]


def apply_floors(priority: Priority, criteria: tuple[str, ...]) -> Priority:
    """A security or data-protection incident (SECURITY_CRITERION: foreign tickets visible in
    the portal, a data leak, unauthorised access, compromised credentials, ransomware) is at
    least Hoch, whatever the words around it suggest; Kritisch stays Kritisch. Such a proposal
    also always goes to staff review, and `Prediction.possibly_critical` alerts staff at once."""
    if SECURITY_CRITERION in criteria and ORDER.index(priority) > ORDER.index(Priority.HOCH):
        return Priority.HOCH
    return priority


MAX_CHARS = 20_000  # config: classifier.max_chars


@dataclass
class PriorityModel:
    """The priority pipeline and, in the same file, the service head: a calibrated classifier
    over the same features that proposes the Leistungskatalog service (None in older files)."""

    pipeline: Pipeline
    version: str
    review_below: float = 0.6
    card: dict[str, Any] | None = None
    service_head: Any | None = None

    @classmethod
    def load(cls, path: Path, review_below: float = 0.6) -> PriorityModel:
        try:
            untrusted = set(sio.get_untrusted_types(file=path))
        except Exception as exc:  # a corrupt zip or schema: refuse, never guess
            raise ModelRefused(f"{path}: not a readable model file ({exc})") from None
        unknown = {t for t in untrusted if t not in ALLOWED_TYPES and not t.startswith("sklearn.")}
        if unknown:
            raise ModelRefused(f"{path}: refusing model with unreviewed types: {sorted(unknown)}")
        card_path = path.with_suffix(".json")
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else {}
        trained_with = str(card.get("scikit_learn", ""))
        if _minor(trained_with) != _minor(sklearn.__version__):
            raise ModelRefused(
                f"{path}: trained with scikit-learn {trained_with or 'unknown'}, installed is "
                f"{sklearn.__version__}; retrain it with `intake train`"
            )
        bundle = sio.load(path, trusted=sorted(untrusted))
        _return_freed_memory()
        service_head = None
        if isinstance(bundle, dict):  # {"priority": Pipeline, "service": head or None}
            pipeline, service_head = bundle.get("priority"), bundle.get("service")
        else:  # files before the service head hold the pipeline alone
            pipeline = bundle
        if not isinstance(pipeline, Pipeline):
            raise ModelRefused(f"{path}: expected a scikit-learn Pipeline")
        version = str(card.get("version", path.stem))
        return cls(
            pipeline=pipeline,
            version=version,
            review_below=review_below,
            card=card,
            service_head=service_head,
        )

    def predict(
        self, subject: str | None, body: str | None, max_chars: int = MAX_CHARS
    ) -> Prediction:
        return self.predict_many([(subject, body)], max_chars)[0]

    def predict_many(
        self, items: Sequence[tuple[str | None, str | None]], max_chars: int = MAX_CHARS
    ) -> list[Prediction]:
        """Proposals for a batch in one vectorised call. Work per request is bounded: the model
        reads at most `max_chars` of subject + new words (quotes and signature stripped from a
        prefix a few times that long, so a 10 MB body costs no more than a long mail). A body
        of None is the empty text."""
        bounded = [
            (None if s is None else s[:max_chars], (b or "")[: max_chars * 4]) for s, b in items
        ]
        texts = [classifier_text(s, b)[:max_chars] for s, b in bounded]
        urgent = [has_urgency(f"{s or ''}\n{b[:max_chars]}") for s, b in bounded]
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self._predict_texts(texts, urgent)

    def _predict_texts(self, texts: list[str], urgent: list[bool]) -> list[Prediction]:
        # The security floor needs the criterion; files without its column look for it apart.
        if SECURITY_CRITERION in self._explainable[3].values():
            security = [False] * len(texts)
        else:
            security = [has_security_incident(t) for t in texts]
        # FeatureUnion.transform would do the same through joblib, at ~2 ms per call.
        union = self.pipeline.named_steps["features"]
        features = sparse.hstack([transform(t, texts) for _, t in union.transformer_list]).tocsr()
        raw = calibrated_proba(self.pipeline.named_steps["model"], features)
        classes = [Priority(c) for c in self.pipeline.classes_]
        probs = np.asarray(raw)[:, [classes.index(p) for p in ORDER]]
        services: list[tuple[str | None, float | None]] = [(None, None)] * len(texts)
        if self.service_head is not None:
            service_probs = calibrated_proba(self.service_head, features)
            best = service_probs.argmax(axis=1)
            labels = [str(c) for c in self.service_head.classes_]
            services = [
                (labels[j], round(float(service_probs[i, j]), 4)) for i, j in enumerate(best)
            ]
        # A row's columns and values straight from the CSR arrays: features[i] builds a sparse
        # matrix per row, which cost a quarter of a batch.
        bounds = features.indptr
        return [
            self._prediction(
                Row(
                    features.indices[bounds[i] : bounds[i + 1]],
                    features.data[bounds[i] : bounds[i + 1]],
                ),
                probs[i],
                urgent[i],
                security[i],
                services[i],
            )
            for i in range(len(texts))
        ]

    def _prediction(
        self,
        row: Any,
        probs: np.ndarray,
        urgent: bool = False,
        security: bool = False,
        service: tuple[str | None, float | None] = (None, None),
    ) -> Prediction:
        decided = decide(probs)
        criteria, terms = self._explain(row, decided)
        if security and SECURITY_CRITERION not in criteria:  # a model file without the column
            criteria = (*criteria, SECURITY_CRITERION)
        priority = apply_floors(decided, criteria)
        if priority is not decided:  # the terms should say why the floor's level, not the model's
            terms = self._explain(row, priority)[1]
        confidence = float(probs[ORDER.index(priority)])
        possibly_critical = priority is not Priority.KRITISCH and bool(
            probs[0] >= POSSIBLY_CRITICAL
        )
        security = SECURITY_CRITERION in criteria
        if urgent and URGENCY not in criteria:  # shown to staff, never read by the model
            criteria = (*criteria, URGENCY)
        return Prediction(
            priority=priority,
            confidence=round(confidence, 4),
            probabilities={p: round(float(v), 4) for p, v in zip(ORDER, probs, strict=True)},
            model_version=self.version,
            needs_review=confidence < self.review_below or possibly_critical or security,
            explanation=Explanation(criteria=criteria, terms=terms),
            service=service[0],
            service_confidence=service[1],
        )

    @cached_property
    def _explainable(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
        """Per feature column: its name as staff read it ('' for character n-grams, never
        shown) and whether it may be shown; the weights of the one logistic regression behind the
        calibration (ensemble=False); and the columns of the offer's criteria."""
        names: list[str] = []
        criteria: dict[int, str] = {}
        for name, transformer in self.pipeline.named_steps["features"].transformer_list:
            if name == "chars":  # character n-grams explain nothing to a person
                names += [""] * transformer.transform([""]).shape[1]
                continue
            for feature in transformer.get_feature_names_out():
                if name == "criteria":
                    criteria[len(names)] = str(feature).removeprefix("criterion:")
                names.append(f"{name}__{feature}")
        estimator = self.pipeline.named_steps["model"].calibrated_classifiers_[0].estimator
        shown = np.asarray(names, dtype=object) != ""
        readable = np.asarray([_readable(name) for name in names], dtype=object)
        return readable, shown, estimator.coef_, criteria

    def _explain(
        self, row: Any, priority: Priority, limit: int = 8
    ) -> tuple[tuple[str, ...], tuple[WeightedTerm, ...]]:
        """The criteria present, and the word n-grams and criteria that pushed hardest towards
        the proposed priority (feature value times its weight for that priority)."""
        names, shown, coef, criteria_columns = self._explainable
        first = min(criteria_columns, default=0)  # the criteria are the last block of columns
        tail = np.sort(row.indices[row.indices >= first]).tolist()
        found = tuple(criteria_columns[i] for i in tail if i in criteria_columns)
        klass = list(self.pipeline.classes_).index(priority.value)
        keep = shown[row.indices]
        columns = row.indices[keep]
        weights = row.data[keep] * coef[klass, columns]
        top = np.argsort(-weights)[:limit]
        terms = tuple(
            WeightedTerm(str(names[columns[i]]), round(float(weights[i]), 3))
            for i in top
            if weights[i] > 0
        )
        return found, terms


class Row(NamedTuple):
    """One request's non-zero feature columns and their values."""

    indices: np.ndarray
    data: np.ndarray


def transform(transformer: Any, texts: list[str]) -> sparse.csr_matrix:
    """transformer.transform(texts); for an l2-normalised TF-IDF vectorizer the same arithmetic
    without scikit-learn's input checks (a third of a single request's time)."""
    if not (
        isinstance(transformer, TfidfVectorizer)
        and transformer.norm == "l2"
        and transformer.use_idf
        and not transformer.binary
    ):
        return transformer.transform(texts)
    x = _counts(transformer, texts)
    if transformer.sublinear_tf:
        np.log(x.data, x.data)
        x.data += 1.0
    x.data *= transformer.idf_[x.indices]
    inplace_csr_row_normalize_l2(x)
    return x


# Per fitted char_wb vectorizer: word -> the vocabulary columns of its n-grams. A word's
# n-grams never depend on its neighbours, and words repeat, so each is cut and looked up once.
# About 200 bytes a word: at most ~10 MB; an attacker's endless new words only empty it.
_WORD_COLUMNS: weakref.WeakKeyDictionary[Any, dict[str, array[int]]] = weakref.WeakKeyDictionary()
WORD_CACHE_SIZE = 50_000


def _counts(transformer: Any, texts: list[str]) -> sparse.csr_matrix:
    """CountVectorizer.transform (same columns and counts, a test checks it) for the two
    analyzers the shipped pipeline uses, at a fraction of scikit-learn's time, which loops over
    every n-gram in Python. Any other set-up goes the ordinary way."""
    plain = (
        transformer.input == "content"
        and transformer.preprocessor is None
        and transformer.tokenizer is None
        and transformer.stop_words is None
    )
    if plain and transformer.analyzer == "char_wb":
        return _char_wb_counts(transformer, texts)
    if (
        plain
        and transformer.analyzer == "word"
        and tuple(transformer.ngram_range) in ((1, 1), (1, 2))
    ):
        return _word_counts(transformer, texts)
    return sparse.csr_matrix(CountVectorizer.transform(transformer, texts), dtype=np.float64)


def _word_counts(transformer: Any, texts: list[str]) -> sparse.csr_matrix:
    """Words and, for ngram_range (1, 2), pairs of neighbouring words, looked up in bulk."""
    lookup = transformer.vocabulary_.get
    preprocess = transformer.build_preprocessor()
    tokenize = transformer.build_tokenizer()
    pairs = transformer.ngram_range[1] == 2
    columns = array("i")
    indptr = [0]
    for text in texts:
        tokens = tokenize(preprocess(text))
        columns.extend([c for c in map(lookup, tokens) if c is not None])
        if pairs:
            joined = map(" ".join, pairwise(tokens))
            columns.extend([c for c in map(lookup, joined) if c is not None])
        indptr.append(len(columns))
    return _csr(columns, indptr, len(transformer.vocabulary_))


def _char_wb_counts(transformer: Any, texts: list[str]) -> sparse.csr_matrix:
    """Character n-grams within words: a word's n-grams never depend on its neighbours, and
    words repeat, so each word is cut and looked up once (cached per vectorizer)."""
    cache = _WORD_COLUMNS.setdefault(transformer, {})
    if len(cache) > WORD_CACHE_SIZE:
        cache.clear()
    vocabulary = transformer.vocabulary_
    preprocess = transformer.build_preprocessor()
    columns = array("i")
    indptr = [0]
    for text in texts:
        for word in preprocess(text).split():
            found = cache.get(word)
            if found is None:
                grams = transformer._char_wb_ngrams(word)
                found = cache[word] = array("i", [vocabulary[g] for g in grams if g in vocabulary])
            columns += found
        indptr.append(len(columns))
    return _csr(columns, indptr, len(vocabulary))


def _csr(columns: array[int], indptr: list[int], width: int) -> sparse.csr_matrix:
    """Counts from each row's (repeated) columns: duplicates are summed, indices sorted."""
    counts = sparse.csr_matrix(
        (np.ones(len(columns)), np.frombuffer(columns, dtype=np.intc), np.asarray(indptr)),
        shape=(len(indptr) - 1, width),
    )
    counts.sum_duplicates()
    return counts


def calibrated_proba(calibrated: Any, features: sparse.csr_matrix) -> np.ndarray:
    """CalibratedClassifierCV.predict_proba for one sigmoid-calibrated linear model with more
    than two classes, without scikit-learn's per-call input checks (they cost ~1 ms per call,
    half of a single request). The same arithmetic; anything else goes the ordinary way."""
    members = getattr(calibrated, "calibrated_classifiers_", [])
    if len(members) != 1 or getattr(members[0], "method", "") != "sigmoid":
        return np.asarray(calibrated.predict_proba(features), dtype=np.float64)
    member = members[0]
    estimator = member.estimator
    classes = list(calibrated.classes_)
    if len(classes) < 3 or not hasattr(estimator, "coef_"):
        return np.asarray(calibrated.predict_proba(features), dtype=np.float64)
    scores = np.asarray(features @ estimator.coef_.T) + estimator.intercept_
    proba = np.zeros((features.shape[0], len(classes)))
    for column, (label, calibrator) in enumerate(
        zip(estimator.classes_, member.calibrators, strict=True)
    ):
        proba[:, classes.index(label)] = expit(-(calibrator.a_ * scores[:, column] + calibrator.b_))
    total = proba.sum(axis=1)[:, np.newaxis]
    proba = np.divide(proba, total, out=np.full_like(proba, 1 / len(classes)), where=total != 0)
    proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
    return np.asarray(proba, dtype=np.float64)


def _return_freed_memory() -> None:
    """Reading a model builds ~60 MB of short-lived objects (the skops schema); hand the freed
    heap back to the system so that it does not stay in the service's resident memory."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: reused, just not returned
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _readable(feature: str) -> str:
    prefix, _, rest = feature.partition("__")
    return rest.removeprefix("criterion:") if prefix == "criteria" else rest
