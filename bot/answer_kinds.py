"""Kinds of answer a question asks for (a year, a person, a price...) and whether a passage can give one.

"What year was X first described?" can only be answered by a passage with a year in it; "can cats get
X?" only by one that mentions cats. The cues and the evidence are regular expressions kept in
bot/data/answer_kinds.toml. A question that asks for a kind its best passage has no evidence of feeds
the `missing_answer_kind` feature of the answer-or-decline model (bot.abstention). A kind marked `exact`
(a figure, a date, a name) is decisive instead: the bot declines and says what the text lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.corpus import Passage
from bot.retrieval import DataFileError, load_labelled_toml
from bot.text import words

if TYPE_CHECKING:
    from bot.retrieval import Retriever, SearchResult

ANSWER_KINDS_FILE = "answer_kinds.toml"
KIND_KEYS = {"name", "cues", "evidence", "same_words", "exact"}
ESCAPE = re.compile(r"\\.|\(\?P")  # "\B", "\W", "(?P<": upper-case letters a lower-case cue may still hold


@dataclass(frozen=True)
class AnswerKind:
    name: str
    cue: re.Pattern[str]  # any of the kind's cues, searched in the question's folded (lower-case) words joined by spaces
    evidence: re.Pattern[str] | None  # any of its evidence, searched in the passage text; None: only same_words
    same_words: frozenset[str] = frozenset()  # a passage with one of these that the cue matched can answer too
    exact: str = ""  # the answer is a figure, a date or a name, and this says what ("doses"): "" for other kinds

    def asked_by(self, question: str) -> str | None:
        """The text a cue matched in the (folded) question, or None."""
        found = self.cue.search(question)
        return found.group(0) if found else None

    def evidenced_in(self, passage: Passage, cue_text: str) -> bool:
        """The passage can give this kind of answer: it matches the evidence, or it has the same word
        ("duck") as the part of the question the cue matched."""
        if self.evidence is not None and self.evidence.search(passage.text):
            return True
        wanted = {_singular(w) for w in words(cue_text) if w in self.same_words or _singular(w) in self.same_words}
        return bool(wanted) and not wanted.isdisjoint(_singular(w) for w in words(passage.text))


def _singular(word: str) -> str:
    """"ducks", "duck's", "puppies" → "duck", "duck", "puppy": enough to tell whether a passage mentions
    the same animal."""
    word = word.removesuffix("'s")
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word.removesuffix("s")


def _any_of(entry: dict, key: str, label: str, flags: int = 0) -> re.Pattern[str] | None:
    """One pattern for all of a kind's `key` patterns (one search instead of one per pattern); None if it has none."""
    name = entry["name"]
    values = entry.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DataFileError(f"data file {label}: `{key}` of kind {name!r} must be a list of regular expressions")
    if not values:
        return None
    if key == "cues" and (upper := next((v for v in values if ESCAPE.sub("", v) != ESCAPE.sub("", v).lower()), None)):
        raise DataFileError(f"data file {label}: cue {upper!r} of kind {name!r} has upper-case letters; "
                            "questions are matched in lower case")
    try:
        return re.compile("|".join(f"(?:{value})" for value in values), flags)
    except (re.error, OverflowError, RecursionError) as error:
        bad = next((v for v in values if not _compiles(v)), "the patterns together")
        raise DataFileError(
            f"data file {label}: bad regular expression in `{key}` of kind {name!r} ({bad!r}): {error}"
        ) from None


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError):
        return False
    return True


def _kind(entry: object, label: str) -> AnswerKind:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise DataFileError(f"data file {label}: every [[kinds]] table needs a `name`")
    unknown = sorted(set(entry) - KIND_KEYS)
    if unknown:
        raise DataFileError(f"data file {label}: kind {entry['name']!r} has unknown keys: {', '.join(unknown)}")
    same_words = entry.get("same_words", "")
    if not isinstance(same_words, str):
        raise DataFileError(f"data file {label}: `same_words` of kind {entry['name']!r} must be a string of words")
    exact = entry.get("exact", "")
    if not isinstance(exact, str):
        raise DataFileError(f"data file {label}: `exact` of kind {entry['name']!r} must be a string (what the text lacks)")
    cue = _any_of(entry, "cues", label)
    if cue is None:
        raise DataFileError(f"data file {label}: kind {entry['name']!r} needs `cues`")
    evidence = _any_of(entry, "evidence", label, re.IGNORECASE)
    return AnswerKind(entry["name"], cue, evidence, frozenset(words(same_words)), exact)


def load_answer_kinds(source: str = ANSWER_KINDS_FILE) -> tuple[AnswerKind, ...]:
    label, data = load_labelled_toml(source)
    unknown = sorted(set(data) - {"kinds"})
    if unknown or not isinstance(data.get("kinds", []), list):
        raise DataFileError(f"data file {label}: expected only [[kinds]] tables, found {', '.join(unknown) or 'kinds'}")
    return tuple(_kind(entry, label) for entry in data.get("kinds", []))


def missing_kinds(
    kinds: tuple[AnswerKind, ...], question_words: tuple[str, ...], passage: Passage,
    about_the_subject: Callable[[], bool] = lambda: True,
) -> list[str]:
    """Names of the kinds of answer the question asks for that the passage shows no evidence of. Evidence
    counts only in a passage `about_the_subject` of the question: "3 to 5 years" in the ALS passage
    does not tell the life expectancy with myasthenia gravis. It is asked only when a cue matched."""
    question = " ".join(question_words)
    asked = [(kind, cue_text) for kind in kinds if (cue_text := kind.asked_by(question)) is not None]
    if not asked:
        return []
    if not about_the_subject():
        return [kind.name for kind, _ in asked]
    return [kind.name for kind, cue_text in asked if not kind.evidenced_in(passage, cue_text)]


def missing_from_best_passage(
    kinds: tuple[AnswerKind, ...], result: SearchResult, retriever: Retriever,
    question_words: tuple[str, ...] | None = None,
) -> tuple[AnswerKind, ...]:
    """The kinds of answer the question asks for that the best passage of a search result (with at least
    one hit) cannot give. What is asked is read from `question_words` when given (a follow-up's own
    words, not the topic it borrowed); the subject the passage must be about, from all the words searched."""
    top = result.hits[0].passage
    asked = result.query.words if question_words is None else question_words
    missing = set(missing_kinds(kinds, asked, top, lambda: mentions_every_specialised_word(result.query.words, top, retriever)))
    return tuple(kind for kind in kinds if kind.name in missing)


def first_exact(kinds: tuple[AnswerKind, ...]) -> AnswerKind | None:
    """The first exact kind (a figure, a date, a name) among these, or None."""
    return next((kind for kind in kinds if kind.exact), None)


def mentions_every_specialised_word(question_words: tuple[str, ...], passage: Passage, retriever: Retriever) -> bool:
    """The passage (or its section title) has every specialised corpus word of the question
    ("myasthenia", "polymyositis"): it is about what the question is about."""
    stem = retriever.analyzer.stem
    subject = {stem(w) for w in question_words} & retriever.specialised_stems
    return not subject or subject <= {stem(w) for w in words(f"{passage.section} {passage.text}")}
