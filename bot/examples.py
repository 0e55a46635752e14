"""Example questions: users' own words for what a passage answers, a second signal for retrieval.

An example is {"question", "answer_contains", "section"} (the format of the evaluation set; of a list of
phrases the first counts). An off-topic example has no phrase ("answer_contains": null): it ties to no
passage; it teaches the topic classifier (bot.classifiers) what the corpus is not about, and the
answer-or-decline model reads how much a question shares with the closest one (`of_off_topic`); the
on-topic ones also train the passage classifiers there. An example is tied to the passage of its section
whose text contains the phrase (to any passage that does, when it names no section); an example that
fits no passage of the loaded corpus is left out, so the bundled examples never touch an operator's own
corpus. A question is compared with the examples by TF-IDF cosine over the examples' own vocabulary,
and each passage scores the similarity of its closest example (nearest-neighbour retrieval). Replies
quote only the corpus: an example is never given as an answer (/why and the JSON explanation name
the closest one).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bot.classifiers import TermSpace
from bot.corpus import Passage

log = logging.getLogger(__name__)

EXAMPLES_FILE = "example_questions.jsonl"


class ExampleFileError(Exception):
    """The example file is malformed; the message names the line."""


@dataclass(frozen=True)
class Example:
    question: str
    answer_contains: str | None  # None: an off-topic question
    section: str | None = None

    @property
    def on_topic(self) -> bool:
        return self.answer_contains is not None


def parse_examples(text: str, label: str) -> list[Example]:
    """Examples from JSONL text; a line without an answer phrase is an off-topic example."""
    examples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            question, phrase, section = data["question"], data.get("answer_contains"), data.get("section")
            if isinstance(phrase, list) and phrase and all(isinstance(p, str) for p in phrase):
                phrase = phrase[0]  # the best of several right passages
            if not isinstance(question, str) or not (phrase is None or isinstance(phrase, str)):
                raise TypeError
            if section is not None and not isinstance(section, str):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ExampleFileError(
                f"{label}:{number}: expected {{\"question\": str, \"answer_contains\": str|[str, ...], \"section\": str}}"
            ) from None
        if question.strip() and phrase != "":
            examples.append(Example(question, phrase or None, section))
    return examples


def tie_to_passages(examples: Iterable[Example], passages: Sequence[Passage]) -> list[tuple[int, Example]]:
    """(passage row, example) for every example whose phrase is in a passage of its section.

    Only the passages of the example's section are searched, so this stays cheap on large corpora;
    an example without a section is looked for in every passage.
    """
    rows_by_section: dict[str, list[int]] = {}
    for row, passage in enumerate(passages):
        for title in (passage.section, *passage.also_in):
            rows_by_section.setdefault(title, []).append(row)
    tied = []
    for example in examples:
        if example.answer_contains is None:
            continue
        needle = example.answer_contains.casefold()
        rows = rows_by_section.get(example.section, []) if example.section else range(len(passages))
        row = next((r for r in rows if needle in passages[r].text.casefold()), None)
        if row is not None:
            tied.append((row, example))
    return tied


class ExampleIndex:
    """TF-IDF vectors of the example questions, and the passage row each one points at."""

    def __init__(self, rows: list[int], term_lists: list[list[str]], questions: list[str]) -> None:
        # Examples are kept grouped by passage row, so the best of each passage is a segment maximum.
        order = sorted(range(len(rows)), key=lambda n: rows[n])
        rows, term_lists, questions = [rows[n] for n in order], [term_lists[n] for n in order], [questions[n] for n in order]
        self.rows = np.asarray(rows, dtype=np.int64)
        self.questions = questions
        starts = np.flatnonzero(np.r_[True, self.rows[1:] != self.rows[:-1]]) if len(rows) else np.empty(0, np.int64)
        self._segment_starts = starts
        self._segment_rows = self.rows[starts]
        self._segment_lengths = np.diff(np.r_[starts, len(rows)])
        ends = (starts + self._segment_lengths).tolist()
        self._segment_of = dict(zip(self._segment_rows.tolist(), zip(starts.tolist(), ends)))  # row → (start, end)
        # Each passage row's words, as its example questions use them (see Retriever.search: "unexplained").
        words_of: dict[int, set[str]] = {}
        for row, terms in zip(rows, term_lists):
            words_of.setdefault(row, set()).update(t for t in terms if " " not in t)
        self.words_of_row = {row: frozenset(found) for row, found in words_of.items()}
        vocabulary: dict[str, int] = {}
        df: dict[int, int] = {}
        data, indices, indptr = [], [], [0]
        for terms in term_lists:
            counts: dict[int, int] = {}
            for term in terms:
                column = vocabulary.setdefault(term, len(vocabulary))
                counts[column] = counts.get(column, 0) + 1
            for column in counts:
                df[column] = df.get(column, 0) + 1
            indices.extend(counts)
            data.extend(1.0 + math.log(c) for c in counts.values())
            indptr.append(len(indices))
        n = len(term_lists)
        self.idf = np.array([math.log((n + 1) / (df[c] + 1)) + 1 for c in range(len(vocabulary))], dtype=np.float32)
        # A query word no example has weighs as much as a word of no example (it still counts in the norm).
        self.terms = TermSpace(vocabulary, self.idf, unseen=float(math.log(n + 1) + 1))
        matrix = sp.csr_matrix(
            (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(n, len(vocabulary)),
        )
        matrix = sp.csr_matrix(matrix.multiply(self.idf[np.newaxis, :]))
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        by_term = sp.csc_matrix(sp.diags(1.0 / norms).dot(matrix).astype(np.float32))
        # Postings (examples with the term, their weights) per term: a question has few terms, so
        # adding up a few short arrays beats slicing a sparse matrix.
        self.postings = [
            (by_term.indices[by_term.indptr[c] : by_term.indptr[c + 1]], by_term.data[by_term.indptr[c] : by_term.indptr[c + 1]])
            for c in range(len(vocabulary))
        ]

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def build(
        cls, examples: Iterable[Example], passages: Sequence[Passage], terms_of: Callable[[str], list[str]]
    ) -> ExampleIndex:
        tied = tie_to_passages(examples, passages)
        index = cls([row for row, _ in tied], [terms_of(e.question) for _, e in tied], [e.question for _, e in tied])
        log.debug("%d example questions tied to passages", len(index))
        return index

    @classmethod
    def of_off_topic(cls, examples: Iterable[Example], terms_of: Callable[[str], list[str]]) -> ExampleIndex:
        """The off-topic examples as one group, tied to no passage: `closest_overlap` then says how much
        a question reads like one the corpus does not answer ("is myasthenia gravis contagious"). One
        that reads the same as an on-topic example after analysis is left out: its words cannot tell them
        apart ("can you get guillain-barré syndrome more than once?" keeps only the name)."""
        examples = list(examples)
        on_topic = {frozenset(terms_of(e.question)) for e in examples if e.on_topic}
        off_topic = [(e.question, terms_of(e.question)) for e in examples if not e.on_topic]
        off_topic = [(q, terms) for q, terms in off_topic if frozenset(terms) not in on_topic]
        return cls([0] * len(off_topic), [terms for _, terms in off_topic], [q for q, _ in off_topic])

    def closest_overlap(self, terms: list[str], explained: Collection[str] = ()) -> float:
        """How much the question and its closest example share, both ways: the smaller of the share of
        the example's (squared TF-IDF) weight the question has and the share of the question's weight the
        example has; 0 when none shares a term. Terms in `explained` (those the answering passage has)
        are not counted as shared: only what the passage does not say can make a question read like
        one it does not answer. So "is gbs contagious" is close to "is myasthenia gravis contagious",
        while "what is constraint induced movement therapy" is not close to "how many hours a day is
        constraint induced movement therapy done", whose extra words it does not have. A word pair, or
        a lay word, still counts when the passage has only its parts or its corpus term ("thymus
        remov", "waddl"): counting those as explained measured no better on dev."""
        if not len(self.rows) or not terms:
            return 0.0
        columns, weights = self.terms.vector(terms, dilute=True)
        if explained:
            left_out = {self.terms.vocabulary[t] for t in explained if t in self.terms.vocabulary}
            kept = [n for n, column in enumerate(columns) if column not in left_out]
            columns, weights = [columns[n] for n in kept], weights[kept]
        if not columns:
            return 0.0
        found, values, question_values = self._postings(columns, weights)
        of_example = np.bincount(found, weights=values * values, minlength=len(self.rows))
        of_question = np.bincount(found, weights=question_values * question_values, minlength=len(self.rows))
        return float(np.minimum(of_example, of_question).max())

    def _postings(self, columns: list[int], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the question's terms, every posting at once: (the example, its weight of the term, the
        question's weight of the term), one entry per example that has the term."""
        examples = [self.postings[column][0] for column in columns]
        values = np.concatenate([self.postings[column][1] for column in columns])
        return np.concatenate(examples), values, np.repeat(weights, [len(e) for e in examples])

    def nearest(self, terms: list[str]) -> dict[int, tuple[float, int]]:
        """Passage row → (cosine of its closest example, that example's number), for examples sharing a term."""
        rows, best, similarities = self.nearest_arrays(terms)
        return {int(r): (float(b), self.closest(int(r), similarities)) for r, b in zip(rows, best)}

    def nearest_arrays(self, terms: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(passage rows in ascending order, cosine of each one's closest example, every example's
        cosine: pass it to closest() for the example itself)."""
        empty = (np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64))
        if not len(self.rows) or not terms:
            return empty
        columns, weights = self.terms.vector(terms, dilute=True)
        if not columns:
            return empty
        # Every example's cosine in one pass: its entries of the question's terms, weighted and summed.
        found, values, question_values = self._postings(columns, weights)
        similarities = np.bincount(found, weights=values * question_values, minlength=len(self.rows))
        best = np.maximum.reduceat(similarities, self._segment_starts)
        kept = best > 0
        return self._segment_rows[kept], best[kept], similarities

    def closest(self, row: int, similarities: np.ndarray) -> int:
        """The number of the first of a passage's examples with the highest cosine (from nearest_arrays)."""
        start, end = self._segment_of[row]
        return start + int(similarities[start:end].argmax())
