"""The offer's criteria as features: production, outage, restart, workaround, users, request type."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin

# Each criterion is a named pattern over lower-cased text (German and English). The names appear
# in explanations to staff, so they say what was found, not how.
CRITERIA: dict[str, re.Pattern[str]] = {
    "Produktivsystem betroffen": re.compile(
        r"produktiv|produktion|\bprod\b|\bprod-|live-?system|production|\blive\b"
    ),
    "Test-/Staging-System": re.compile(
        r"test-?(system|umgebung|instanz|server)|staging|entwicklungs(system|umgebung)|"
        r"\bdev(-| )?(system|server|instanz)|\bqa-?(system|umgebung)|test (system|instance|server)"
    ),
    "Totalausfall/Absturz/Hänger": re.compile(
        r"ausfall|ausgefallen|geht (gar )?nichts mehr|nicht (mehr )?erreichbar|komplett (down|weg|tot)|"
        r"\bdown\b|abgestürzt|absturz|stürzt ab|startet nicht|hängt|h[äa]ngt sich auf|friert ein|"
        r"internal server error|\b50[023]\b|crash|outage|unreachable|not responding|hangs?\b|"
        r"frozen|won'?t start|does not start|doesn'?t start|nothing works|niemand kann|keiner kann|"
        r"nobody can|no one can|steht komplett|totalausfall"
    ),
    "Neustart ohne Erfolg": re.compile(
        r"(neustart|neu gestartet|reboot|restart)[^.\n]{0,80}(nicht geholfen|ohne erfolg|keine änderung|"
        r"weiterhin|immer noch|nach wie vor|bringt nichts|didn'?t help|did not help|no change|still)|"
        r"(auch|selbst|even) (nach|after) (dem |einem |a |the )?(neustart|reboot|restart)"
    ),
    "Nach Neustart wieder in Ordnung": re.compile(
        r"(nach|after) (dem |einem |a |the )?(neustart|reboot|restart)[^.\n]{0,40}"
        r"(läuft|geht|funktioniert|works|running|fine)[^.\n]{0,20}(wieder|again)"
    ),
    "Workaround vorhanden": re.compile(
        r"workaround|umgehung|behelf|notlösung|ausweich|vorerst manuell|manuell (an|erfass|einstell)|"
        r"work around|in the meantime we|übergangsweise|zwischenzeitlich"
    ),
    "Kein Workaround": re.compile(
        r"kein(en)? (workaround|umgehung|behelf|ausweg)|keine (umgehung|alternative|notlösung)|"
        r"(workaround|umgehung)[^.\n]{0,30}(funktioniert|klappt|greift|hilft) (auch )?nicht|"
        r"no workaround|without (a |any )?workaround|no way (around|to work)|not possible to work"
    ),
    "Alle Benutzer betroffen": re.compile(
        r"\balle[nr]? (agenten|benutzer|nutzer|user|kollegen|mitarbeiter|anwender)|niemand|keiner|"
        r"sämtliche|nobody|no one|all (users|agents|colleagues|staff)|everyone|everybody|"
        r"ganze[nr]? (team|firma|abteilung|servicedesk)"
    ),
    "Einzelne Benutzer betroffen": re.compile(
        r"\b(ein|einer|eine|einzelne[nr]?|zwei|drei|wenige[nr]?|einige[nr]?|1|2|3) "
        r"(agent|agenten|kolleg\w*|benutzer|nutzer|user|mitarbeiter\w*|anwender\w*)|"
        r"one (user|agent|colleague)|a few (users|agents)|single user|only (one|me|my)|nur (bei )?(mir|einem|einer)"
    ),
    "Frage zur Nutzung": re.compile(
        r"\?|wie kann|wie geht|frage|how (do|can|to)|question|is it possible|ist es möglich|anleitung"
    ),
    "Wunsch/Erweiterung/Angebot": re.compile(
        r"feature|erweiterung|anpassung|wunsch|wünschen|neue funktion|angebot|kostenvoranschlag|quote|"
        r"offer|schulung|training|workshop|would like|möchten gern|hätten gern|lizenz|licen[cs]e|"
        r"download|new field|neues feld|entwicklung|customi[sz]"
    ),
    "Dringlichkeitswort": re.compile(r"dringend|asap|sofort|urgent|eilig|schnellstmöglich|!!"),
}


WORKAROUND_PRESENT = "Workaround vorhanden"
WORKAROUND_NEGATED = "Kein Workaround"


def _criteria_flags(text: str) -> list[bool]:
    lowered = text.lower()
    flags = {name: bool(pattern.search(lowered)) for name, pattern in CRITERIA.items()}
    if flags[WORKAROUND_NEGATED]:
        # "kein Workaround" mentions the word without offering one: only count another mention.
        rest = CRITERIA[WORKAROUND_NEGATED].sub(" ", lowered)
        flags[WORKAROUND_PRESENT] = bool(CRITERIA[WORKAROUND_PRESENT].search(rest))
    return list(flags.values())


def find_criteria(text: str) -> list[str]:
    """The names of the criteria that the text matches, in the table's order."""
    return [name for name, found in zip(CRITERIA, _criteria_flags(text), strict=True) if found]


class CriteriaFeatures(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """One binary column per criterion; stateless, so safe to persist and reload with skops."""

    def fit(self, x: Iterable[str], y: Any = None) -> CriteriaFeatures:
        return self

    def transform(self, x: Iterable[str]) -> sparse.csr_matrix:
        rows = [[1.0 if found else 0.0 for found in _criteria_flags(text)] for text in x]
        return sparse.csr_matrix(np.asarray(rows, dtype=np.float64).reshape(-1, len(CRITERIA)))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"criterion:{name}" for name in CRITERIA], dtype=object)
