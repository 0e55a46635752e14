"""Kinds of answer a question asks for (a year, a person, a price...) and whether a passage can give one.

"What year was X first described?" can only be answered by a passage with a year in it; "can cats get
X?" only by one that mentions cats. The cues and the evidence are regular expressions kept in
bot/data/answer_kinds.toml. A question that asks for a kind its best passage has no evidence of feeds
the `missing_answer_kind` feature of the answer-or-decline model (bot.abstention).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.corpus import Passage
from bot.retrieval import DataFileError, load_toml
from bot.text import words

ANSWER_KINDS_FILE = "answer_kinds.toml"


@dataclass(frozen=True)
class AnswerKind:
    name: str
    cues: tuple[re.Pattern[str], ...]  # searched in the question's folded words, joined by spaces
    evidence: tuple[re.Pattern[str], ...]  # searched in the passage text, ignoring case; none: no passage can
    same_word: bool = False  # the passage must also contain the word the cue matched ("cats")

    def asked_by(self, question: str) -> str | None:
        """The text of the first cue the (folded) question matches, or None."""
        for cue in self.cues:
            if found := cue.search(question):
                return found.group(0)
        return None

    def evidenced_in(self, passage: Passage, cue_text: str) -> bool:
        if any(pattern.search(passage.text) for pattern in self.evidence):
            return True
        return self.same_word and bool(set(words(cue_text)) & set(words(passage.text)))


def _patterns(entry: dict, key: str, source: str) -> tuple[re.Pattern[str], ...]:
    values = entry.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DataFileError(f"data file {source}: `{key}` of a kind must be a list of regular expressions")
    try:
        return tuple(re.compile(v, re.IGNORECASE) for v in values)
    except re.error as error:
        raise DataFileError(f"data file {source}: bad regular expression in `{key}`: {error}") from None


def load_answer_kinds(source: str = ANSWER_KINDS_FILE) -> tuple[AnswerKind, ...]:
    entries = load_toml(source).get("kinds", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries):
        raise DataFileError(f"data file {source}: [[kinds]] tables need a `name`")
    kinds = []
    for entry in entries:
        kind = AnswerKind(entry["name"], _patterns(entry, "cues", source), _patterns(entry, "evidence", source),
                          bool(entry.get("same_word", False)))
        if not kind.cues:
            raise DataFileError(f"data file {source}: kind {kind.name!r} needs `cues`")
        kinds.append(kind)
    return tuple(kinds)


def missing_kinds(kinds: tuple[AnswerKind, ...], question_words: tuple[str, ...], passage: Passage) -> list[str]:
    """Names of the kinds of answer the question asks for that the passage shows no evidence of."""
    question = " ".join(question_words)
    missing = []
    for kind in kinds:
        cue_text = kind.asked_by(question)
        if cue_text is not None and not kind.evidenced_in(passage, cue_text):
            missing.append(kind.name)
    return missing
