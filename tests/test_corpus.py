"""The training corpus is ours, balanced, mostly German, and written rather than templated."""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from classifier.corpus import load_corpus
from intake.domain import Priority

EXAMPLES = load_corpus()


def test_the_corpus_has_enough_rows_for_every_priority() -> None:
    assert len(EXAMPLES) >= 2000
    counts = Counter(e.priority for e in EXAMPLES)
    assert all(counts[p] >= 450 for p in Priority), counts


def test_about_three_quarters_are_german_and_both_styles_occur() -> None:
    german = sum(e.lang == "de" for e in EXAMPLES) / len(EXAMPLES)
    assert 0.7 <= german <= 0.8
    assert {e.style for e in EXAMPLES} == {"mail", "chat"}
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)


def test_fewer_than_five_percent_of_rows_have_a_near_duplicate() -> None:
    texts = [e.text.lower() for e in EXAMPLES]
    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit_transform(texts)
    similarity = cosine_similarity(matrix, dense_output=True)
    np.fill_diagonal(similarity, 0)
    with_duplicate = int((similarity >= 0.8).any(axis=1).sum())
    assert with_duplicate / len(EXAMPLES) < 0.05, f"{with_duplicate} rows have a near duplicate"


SERVICES = {
    "stoerung",
    "konfiguration",
    "update",
    "installation",
    "beratung",
    "anpassung",
    "download",
    "vertrag",
}
KEY_ORDER = [
    "id",
    "lang",
    "style",
    "scenario",
    "subject",
    "body",
    "priority",
    "service",
    "hard_case",
]


def test_every_row_names_a_known_service_and_every_service_has_rows() -> None:
    unknown = [e.id for e in EXAMPLES if e.service not in SERVICES]
    assert not unknown, unknown[:10]
    counts = Counter(e.service for e in EXAMPLES)
    assert all(counts[s] >= 30 for s in SERVICES), counts


def test_a_shared_scenario_groups_at_least_two_rows() -> None:
    groups = Counter(e.scenario for e in EXAMPLES)
    lonely = [e.id for e in EXAMPLES if e.scenario != e.id and groups[e.scenario] < 2]
    assert not lonely, lonely


def test_rows_keep_the_documented_key_order() -> None:
    import json

    from classifier.corpus import CORPUS_DIR

    for path in sorted(CORPUS_DIR.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            keys = list(json.loads(line))
            assert keys == [k for k in KEY_ORDER if k in keys], (path.name, keys)


def test_tagged_traps_keep_the_guide_s_decisions() -> None:
    # a security incident is at least Hoch; an incident a restart already solved is Niedrig
    security = [e.id for e in EXAMPLES if e.hard_case == "security"]
    assert security and all(
        e.priority in (Priority.KRITISCH, Priority.HOCH)
        for e in EXAMPLES
        if e.hard_case == "security"
    )
    resolved = {"resolved", "restart_solved", "solved-by-restart"}
    assert all(e.priority == Priority.NIEDRIG for e in EXAMPLES if e.hard_case in resolved)
