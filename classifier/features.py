"""The offer's criteria as features: production, outage, restart, workaround, users, request type.

Criteria read like a person would: a negated mention ("kein Ausfall", "nicht abgestürzt", "no
outage") or one in a sentence that says the problem is over ("läuft wieder", "resolved") is no
outage; error codes count only as errors ("HTTP 500", "Fehler 503"), never as numbers ("500
Tickets"); words match as whole words ("frage" is not in "Anfrage"); a question mark is no usage
question when a malfunction is described. Urgency words ("DRINGEND", "ASAP") say nothing about the
impact: they are removed from what the model reads (`neutral_text`) and only shown to staff.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin

from intake.domain import SECURITY_CRITERION

OUTAGE = "Totalausfall/Absturz/Hänger"
RESOLVED = "Problem behoben/läuft wieder"
QUESTION = "Frage zur Nutzung"
URGENCY = "Dringlichkeitswort"
WORKAROUND_PRESENT = "Workaround vorhanden"
WORKAROUND_NEGATED = "Kein Workaround"

# A negation shortly before a mention (at most two words, no comma between) takes it back.
NEGATION = re.compile(
    r"\b(kein|keine|keinen|keinem|keiner|nicht|nie|niemals|ohne|no|not|never|without|"
    r"isn'?t|wasn'?t|aren'?t|weren'?t|hasn'?t|haven'?t|didn'?t|doesn'?t)\b(\s+[^\s,;:]+){0,2}\s*$"
)
# Sentence-like segments: a resolution only speaks for its own segment ("läuft wieder, aber
# der Daemon hängt" still hangs).
SEGMENTS = re.compile(r"[.!?;\n]+|,?\s+\b(aber|jedoch|allerdings|but|however|yet)\b")

_OUTAGE = (
    r"\b(total|komplett|system|server)?ausf(all|älle)\b|\bausgefallen|geht (gar )?nichts mehr|"
    r"nicht (mehr )?erreichbar|komplett (down|weg|tot)|\bdown\b|abgestürzt|\babsturz|stürzt\b[^.\n]{0,20}\bab\b|"
    r"startet nicht|\bhängt|friert ein|eingefroren|internal server error|bad gateway|"
    r"service (temporarily )?unavailable|gateway time-?out|"
    r"\b(http|fehler|error|status|statuscode|fehlercode|code|meldung)\W{0,3}50[0234]\b|"
    r"\b50[0234]\W{0,3}(internal|bad gateway|service|gateway|fehler|error)|"
    r"\bcrash|\boutage|unreachable|not responding|\bhangs?\b|\bhanging\b|\bfrozen\b|"
    r"won'?t start|does not start|doesn'?t start|nothing works|niemand kann|keiner kann|kein(e|er)? "
    r"(agent|kolleg\w*|benutzer|nutzer|mitarbeiter\w*) kann|"
    r"nobody can|no one can|steht komplett|\balles steht\b|\bsteht (jetzt |nun )?(alles )?still\b|"
    r"totalausfall|is down\b|went down"
)
_RESOLVED = (
    r"\b(läuft|geht|funktioniert|klappt|ist)( jetzt| nun| inzwischen| seit \S+( uhr)?| auch)? wieder\b"
    r"(?! (nicht|down|weg|ausgefallen|abgestürzt|kaputt))|"
    r"wieder (erreichbar|verfügbar|online|da\b|normal|in ordnung)|"
    r"\b(hat sich|ist) (von selbst )?erledigt|\b(ist|wurde|wurden|sind) behoben|\bbehoben\b|"
    r"\bresolved\b|\bfixed\b|works again|working again|running again|back (up|online|to normal)|"
    r"\bis back\b|solved itself|sorted itself"
)
_SECURITY = (
    r"fremde[nr]? (tickets|daten|kundendaten|anfragen)|"
    r"(tickets|daten|anfragen) (von )?(anderen|fremden|anderer|fremder) (kunden|firmen|mandanten)|"
    r"(other|another) (customers?'?|company'?s?|tenants?'?)( \w+)? (tickets|data)|"
    r"tickets (of|from|belonging to) (other|another) (customers?|compan\w+)|"
    r"datenleck|datenpanne|datenschutzvorfall|datenabfluss|sicherheitsvorfall|data (leak|breach)|"
    r"security (incident|breach)|unbefugte[nrm]? zugriff|unberechtigte[nrm]? zugriff|"
    r"unauthori[sz]ed (access|login)|zugangsdaten\W+(\w+\W+){0,3}(gestohlen|kompromittiert|geleakt|veröffentlicht)|"
    r"(kompromittiert|gehackt|compromised|hacked|leaked)|ransomware|verschlüsselungstrojaner|"
    r"erpressung|\bphishing\b[^.\n]{0,40}(erfolgreich|eingegeben|entered)"
)
_URGENCY = (
    r"\b(dringend\w*|asap|urgent\w*|eilig\w*|eilt|schnellstmöglich\w*|sofort|"
    r"so schnell wie möglich|as soon as possible|notfall|emergency|prio(rität)? 1)\b[\s:!,.-]*|!{2,}"
)
_MALFUNCTION = (
    r"\b(fehler\w*|error\w*|fehlgeschlagen|schlägt fehl|kaputt|defekt|broken|fails?\b|failed|failing|"
    r"exception|warnung|warning)|(funktioniert|geht|klappt|läuft|kommt|startet|lädt|works?|working|"
    r"loads?|runs?|sends?|starts?)( \S+){0,3} (nicht|nicht mehr|keine|kein|no longer|not)\b|"
    r"(doesn'?t|does not|don'?t|won'?t|can'?t|cannot|isn'?t|not) (work|load|start|send|open|show|run|log)|"
    r"\b(keine|kein|no) (mails?|e-mails?|tickets?|benachrichtigung\w*|notifications?) mehr|"
    r"nicht mehr\b"
)

# Each criterion is a named pattern over lower-cased text (German and English). The names appear
# in explanations to staff, so they say what was found, not how. Criteria in SCOPED are found
# only outside negations (and the outage only outside sentences saying it is over).
CRITERIA: dict[str, re.Pattern[str]] = {
    "Produktivsystem betroffen": re.compile(
        r"produktiv|produktion|\bprod\b|\bprod-|live-?system|production|\blive\b"
    ),
    "Test-/Staging-System": re.compile(
        r"test-?(system|umgebung|instanz|server)|staging|entwicklungs(system|umgebung)|"
        r"\bdev(-| )?(system|server|instanz)|\bqa-?(system|umgebung)|test (system|instance|server)"
    ),
    OUTAGE: re.compile(_OUTAGE),
    RESOLVED: re.compile(_RESOLVED),
    "Neustart ohne Erfolg": re.compile(
        r"(neustart|neu gestartet|reboot|restart)[^.\n]{0,80}(nicht geholfen|ohne erfolg|keine änderung|"
        r"weiterhin|immer noch|nach wie vor|bringt nichts|didn'?t help|did not help|no change|still)|"
        r"(auch|selbst|even) (nach|after) (dem |einem |a |the )?(neustart|reboot|restart)"
    ),
    "Nach Neustart wieder in Ordnung": re.compile(
        r"(nach|after) (dem |einem |a |the )?(neustart|reboot|restart)[^.\n]{0,40}"
        r"(läuft|geht|funktioniert|works|running|fine)[^.\n]{0,20}(wieder|again)"
    ),
    WORKAROUND_PRESENT: re.compile(
        r"workaround|umgehung|behelf|notlösung|ausweich|vorerst manuell|manuell (an|erfass|einstell)|"
        r"work around|in the meantime we|übergangsweise|zwischenzeitlich"
    ),
    WORKAROUND_NEGATED: re.compile(
        r"kein(en)? (workaround|umgehung|behelf|ausweg)|keine (umgehung|alternative|notlösung)|"
        r"(workaround|umgehung)[^.\n]{0,30}(funktioniert|klappt|greift|hilft) (auch )?nicht|"
        r"no workaround|without (a |any )?workaround|no way (around|to work)|not possible to work"
    ),
    "Alle Benutzer betroffen": re.compile(
        r"\b(alle[nr]?|sämtliche[nr]?) (\w+ )?(agenten|benutzer\w*|nutzer\w*|user|users|kolleg\w*|"
        r"mitarbeite\w*|anwender\w*|kunden)\b|\bniemand\b|\bkeiner (kann|kommt|von uns|mehr)|"
        r"\bkein(e|er)? (agent|kolleg\w*|benutzer|nutzer|mitarbeite\w*) (kann|kommt)|"
        r"\bnobody\b|\bno one\b|\ball (of )?(our |the )?(users|agents|colleagues|staff|employees)\b|"
        r"\beveryone\b|\beverybody\b|\bganze[nr]? (team|firma|abteilung|servicedesk|service desk)\b"
    ),
    "Einzelne Benutzer betroffen": re.compile(
        r"\b(ein|einer|eine|einem|einzelne[nr]?|zwei|drei|wenige[nr]?|einige[nr]?|1|2|3) "
        r"(agent|agenten|kolleg\w*|benutzer|nutzer|user|mitarbeiter\w*|anwender\w*)\b|"
        r"\bone (user|agent|colleague)|\ba few (users|agents)|\bsingle user|\bonly (one|me|my)\b|"
        r"\bnur (bei )?(mir|einem|einer)\b"
    ),
    QUESTION: re.compile(
        r"\bwie (kann|können|geht|mache|richte|stelle|lege)\b|\bhow (do|can|to|does|should)\b|"
        r"\bis it possible\b|\bist es möglich\b|\banleitung\b|\bdokumentation\b|\bhowto\b"
    ),
    "Wunsch/Erweiterung/Angebot": re.compile(
        r"feature|erweiterung|anpassung|wunsch|wünschen|gewünscht|neue funktion|angebot|"
        r"kostenvoranschlag|\bquote\b|\boffer\b|schulung|training|workshop|would like|möchten gern|"
        r"hätten gern|lizenz|licen[cs]e|download|new field|neues feld|entwicklung|customi[sz]"
    ),
    SECURITY_CRITERION: re.compile(_SECURITY),
}

SCOPED = frozenset({OUTAGE, SECURITY_CRITERION})
# Python's re scans alternations slowly when branches open with \b; without it a pattern only
# finds more, so it is a quick first pass: the exact pattern runs only where it found something.
_QUICK = {name: re.compile(p.pattern.replace(r"\b", "")) for name, p in CRITERIA.items()}
# Cheaper still for the long patterns: words one of which every match contains.
_GATES: dict[str, tuple[str, ...]] = {
    OUTAGE: (
        "ausf", "ausgefallen", "nichts mehr", "erreichbar", "down", "komplett", "stürz", "absturz", "start",
        "hängt", "friert", "eingefroren", "error", "gateway", "unavailable", "50", "crash",
        "outage", "unreachable", "responding", "hang", "frozen", "nothing works", "kann", "can",
        "steht",
    ),
    RESOLVED: (
        "wieder", "erledigt", "behoben", "resolved", "fixed", "again", "back", "itself",
    ),
    "Neustart ohne Erfolg": ("neustart", "neu gestartet", "reboot", "restart"),
    "Nach Neustart wieder in Ordnung": ("neustart", "reboot", "restart"),
    WORKAROUND_NEGATED: ("kein", "workaround", "umgehung", "no way", "not possible"),
    "Alle Benutzer betroffen": (
        "alle", "sämtlich", "niemand", "kein", "nobody", "no one", "all ", "everyone",
        "everybody", "ganze",
    ),
    "Einzelne Benutzer betroffen": (
        "agent", "kolleg", "nutzer", "user", "mitarbeite", "anwender", "colleague", "only",
        "nur ",
    ),
    "Wunsch/Erweiterung/Angebot": (
        "feature", "erweiterung", "anpassung", "wunsch", "wünschen", "gewünscht", "neue funktion",
        "angebot", "kostenvoranschlag", "quote", "offer", "schulung", "training", "workshop",
        "would like", "möchten gern", "hätten gern", "lizenz", "licen", "download", "new field",
        "neues feld", "entwicklung", "customi",
    ),
    SECURITY_CRITERION: (
        "fremd", "andere", "other", "another", "daten", "data", "sicherheit", "security",
        "unbefugt", "unberechtigt", "unauthori", "zugangsdaten", "kompromitt", "gehackt",
        "compromised", "hacked", "leaked", "ransomware", "trojaner", "erpress", "phishing",
    ),
}  # fmt: skip


def _maybe(name: str, lowered: str) -> bool:
    gate = _GATES.get(name)
    if gate is not None and not any(map(lowered.__contains__, gate)):
        return False
    return bool(_QUICK[name].search(lowered))


_RESOLVED_RE = CRITERIA[RESOLVED]
_URGENCY_RE = re.compile(_URGENCY, re.IGNORECASE)
_MALFUNCTION_RE = re.compile(_MALFUNCTION)
_MALFUNCTION_QUICK = re.compile(_MALFUNCTION.replace(r"\b", ""))
# A bare question ("?", "Frage", "question") is a usage question only without a malfunction.
_BARE_QUESTION = re.compile(r"\?|\bfrage\b|\bfragen\b|\bquestions?\b")

# What the model's columns are: every criterion above. Urgency is found only to be shown.
COLUMNS = tuple(CRITERIA)
# The columns of model files written before the criteria had scopes (they have no `columns_`).
LEGACY_COLUMNS = (
    "Produktivsystem betroffen",
    "Test-/Staging-System",
    OUTAGE,
    "Neustart ohne Erfolg",
    "Nach Neustart wieder in Ordnung",
    WORKAROUND_PRESENT,
    WORKAROUND_NEGATED,
    "Alle Benutzer betroffen",
    "Einzelne Benutzer betroffen",
    QUESTION,
    "Wunsch/Erweiterung/Angebot",
    URGENCY,
)


def _segments(text: str) -> list[str]:
    return [s for s in SEGMENTS.split(text) if s and s not in _SEPARATOR_WORDS]


_SEPARATOR_WORDS = frozenset({"aber", "jedoch", "allerdings", "but", "however", "yet"})


def _in_scope(pattern: re.Pattern[str], text: str, resolved_ends: bool) -> bool:
    """A mention that no negation just before it takes back (and, if `resolved_ends`, that is
    not in a sentence saying the problem is over)."""
    for segment in _segments(text):
        if resolved_ends and _RESOLVED_RE.search(segment):
            continue
        for match in pattern.finditer(segment):
            if not NEGATION.search(segment[max(0, match.start() - 40) : match.start()]):
                return True
    return False


def _resolved(text: str) -> bool:
    """Whether "läuft wieder", "resolved", … is said, not asked ("läuft wieder?") nor negated."""
    for segment in re.split(r"(?<=[.!?;\n])", text):
        if segment.rstrip().endswith("?"):
            continue
        for match in _RESOLVED_RE.finditer(segment):
            if not NEGATION.search(segment[max(0, match.start() - 40) : match.start()]):
                return True
    return False


def _criteria_flags(text: str) -> dict[str, bool]:
    lowered = text.lower()
    flags: dict[str, bool] = {}
    for name, pattern in CRITERIA.items():
        if not _maybe(name, lowered):
            flags[name] = False
        elif name in SCOPED:
            resolved_ends = name == OUTAGE and _maybe(RESOLVED, lowered)
            flags[name] = _in_scope(pattern, lowered, resolved_ends)
        elif name == RESOLVED:
            flags[name] = _resolved(lowered)
        else:
            flags[name] = bool(pattern.search(lowered))
    if flags[WORKAROUND_NEGATED]:
        # "kein Workaround" mentions the word without offering one: only count another mention.
        rest = CRITERIA[WORKAROUND_NEGATED].sub(" ", lowered)
        flags[WORKAROUND_PRESENT] = bool(CRITERIA[WORKAROUND_PRESENT].search(rest))
    if not flags[QUESTION] and _BARE_QUESTION.search(lowered):
        # "Warum geht X nicht mehr?" reports a malfunction; it is no usage question.
        flags[QUESTION] = not (
            flags[OUTAGE]
            or (_MALFUNCTION_QUICK.search(lowered) and _MALFUNCTION_RE.search(lowered))
        )
    return flags


def find_criteria(text: str) -> list[str]:
    """The names of the criteria that the text matches, in the table's order (urgency last:
    it is shown, but the model never reads it)."""
    flags = _criteria_flags(text)
    found = [name for name in COLUMNS if flags[name]]
    return [*found, URGENCY] if has_urgency(text) else found


def has_security_incident(text: str) -> bool:
    """The security criterion alone (for the decision's floor, whatever the model's columns)."""
    lowered = text.lower()
    return _maybe(SECURITY_CRITERION, lowered) and _in_scope(
        CRITERIA[SECURITY_CRITERION], lowered, resolved_ends=False
    )


# Every urgency match contains one of these (in lower case); most texts contain none, and
# looking for them is far quicker than the case-blind pattern.
_URGENCY_GATE = (
    "dringend", "asap", "urgent", "eilig", "eilt", "schnellstmöglich", "sofort", "so schnell",
    "as soon", "notfall", "emergency", "prio", "!!",
)  # fmt: skip


def _may_be_urgent(text: str) -> bool:
    return any(map(text.lower().__contains__, _URGENCY_GATE))


def has_urgency(text: str) -> bool:
    return _may_be_urgent(text) and bool(_URGENCY_RE.search(text))


def neutral_text(text: str) -> str:
    """The text without urgency words: "DRINGEND"/"ASAP" describe no impact and must move the
    proposal nowhere, so the model neither learns nor reads them."""
    return (_URGENCY_RE.sub(" ", text) if _may_be_urgent(text) else text).strip()


class CriteriaFeatures(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """One binary column per criterion. Fitting only records which criteria were columns, so a
    model file keeps its column layout when criteria are added later; safe with skops."""

    def fit(self, x: Iterable[str], y: Any = None) -> CriteriaFeatures:
        self.columns_ = list(COLUMNS)
        return self

    @property
    def _columns(self) -> list[str]:
        return list(getattr(self, "columns_", LEGACY_COLUMNS))

    def transform(self, x: Iterable[str]) -> sparse.csr_matrix:
        columns = self._columns
        # URGENCY is a column only in old files; they read the text without urgency words,
        # so it is never found (and need not be looked for).
        rows = [
            [1.0 if flags.get(name) else 0.0 for name in columns]
            for flags in map(_criteria_flags, x)
        ]
        return sparse.csr_matrix(np.asarray(rows, dtype=np.float64).reshape(-1, len(columns)))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"criterion:{name}" for name in self._columns], dtype=object)
