"""Linear models fitted on the example questions (with scikit-learn) and applied from their weights.

- `TopicClassifier`: is a question about the corpus's subject at all? Logistic regression, with the
  example questions tied to a passage as on topic and the off-topic ones ("lemon drizzle cake recipe")
  as not. It learns which words mark a question about something else ("recipe", "tyre", "diet") as well
  as which mark one about this corpus. Its log-odds are one feature of the answer-or-decline model
  (bot.abstention); it never ranks passages.
- `PassageClassifier`: which passage do questions worded like this one ask about? A linear SVM, one
  class per passage that has example questions. There are two: one reads the analysed terms (lay words
  mapped, typos corrected), one reads how the question is spelt, as four-letter pieces of its words
  (`spelling_pieces`), which copes with the misspellings no correction catches ("myastenia", "gillian
  barr"). Their support (0 to 1) is added to the scores of the passages being re-ranked; replies
  still quote only the corpus.

All read TF-IDF vectors with sublinear term frequency and unit length. Applying them needs only the
weights, so the fitted models are cached next to the index as plain arrays (.npz, no pickle).
"""

from __future__ import annotations

import math
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from bot.text import words

# Fewer example questions than this on either side: no topic classifier (its log-odds would be noise).
MIN_PER_CLASS = 20
TOPIC_REGULARISATION = 1.0  # scikit-learn's C
PASSAGE_REGULARISATION = 1.0
# At least this many on-topic examples, over at least two passages, for a passage classifier.
MIN_PASSAGE_EXAMPLES = 20
SUPPORT_SLOPE = 2.0  # of the logistic curve that turns a decision value into support (see PassageClassifier.support)
SPELLING_PIECE = 4  # letters per piece of a word that the spelling classifier reads
SPELLING_MIN_QUESTIONS = 2  # a piece in fewer example questions than this is left out


def spelling_pieces(text: str) -> list[str]:
    """The overlapping four-letter pieces of each word, the word padded with a space on both sides
    ("weak" → " wea", "weak", "eak "); a shorter padded word is one piece."""
    pieces = []
    for word in words(text):
        padded = f" {word} "
        pieces.extend(padded[i : i + SPELLING_PIECE] for i in range(max(1, len(padded) - SPELLING_PIECE + 1)))
    return pieces


@dataclass(frozen=True, eq=False)
class TermSpace:
    """A TF-IDF vocabulary: term → column, and each column's IDF (also the example index's, bot.examples)."""

    vocabulary: dict[str, int]
    idf: np.ndarray
    unseen: float | None = None  # the IDF a term it lacks would have; by default the highest it has

    @cached_property
    def unseen_idf(self) -> float:
        if self.unseen is not None:
            return self.unseen
        return float(self.idf.max()) if len(self.idf) else 1.0

    def vector(self, terms: Sequence[str], dilute: bool = False) -> tuple[list[int], np.ndarray]:
        """(columns, unit-length weights) of a question's known terms. With `dilute`, terms the
        vocabulary lacks still count in the length, at the highest IDF, so they weaken the evidence."""
        columns, values, squares = [], [], 0.0
        vocabulary, idf = self.vocabulary, self._idf
        for term, count in Counter(terms).items():
            column = vocabulary.get(term)
            if column is not None:
                weight = idf[column] if count == 1 else (1.0 + math.log(count)) * idf[column]
                columns.append(column)
                values.append(weight)
                squares += weight * weight
            elif dilute:
                weight = (1.0 + math.log(count)) * self.unseen_idf
                squares += weight * weight
        norm = math.sqrt(squares) or 1.0
        return columns, np.asarray(values, dtype=np.float64) / norm

    @cached_property
    def _idf(self) -> list[float]:
        return self.idf.tolist()  # plain floats: indexing a list is cheaper than an array, term by term

    @staticmethod
    def fitted(documents: Sequence[Sequence[str]], min_df: int = 1):
        """(TF-IDF matrix, term space) of analysed documents, as scikit-learn builds them."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(analyzer=list, sublinear_tf=True, min_df=min_df)
        matrix = vectorizer.fit_transform(documents)
        return matrix, TermSpace(dict(vectorizer.vocabulary_), vectorizer.idf_.astype(np.float64))


@dataclass(frozen=True, eq=False)
class TopicClassifier:
    terms: TermSpace
    coefficients: np.ndarray  # one per column
    intercept: float

    def log_odds(self, terms: Sequence[str]) -> float:
        """Log-odds that a question with these analysed terms is on topic ("why is my coffee so weak" is
        less sure than "weak": words the classifier never saw dilute the evidence)."""
        columns, values = self.terms.vector(terms, dilute=True)
        return self.intercept + float(values @ self.coefficients[columns]) if columns else self.intercept

    @classmethod
    def fit(cls, on_topic: Sequence[Sequence[str]], off_topic: Sequence[Sequence[str]]) -> TopicClassifier | None:
        """Fitted on the analysed terms of on- and off-topic questions; None with too few of either."""
        if min(len(on_topic), len(off_topic)) < MIN_PER_CLASS:
            return None
        from sklearn.linear_model import LogisticRegression

        try:
            matrix, space = TermSpace.fitted([*on_topic, *off_topic])
        except ValueError:  # every question empty after analysis
            return None
        labels = [True] * len(on_topic) + [False] * len(off_topic)
        model = LogisticRegression(C=TOPIC_REGULARISATION, class_weight="balanced", max_iter=5000).fit(matrix, labels)
        return cls(space, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


@dataclass(frozen=True, eq=False)
class PassageClassifier:
    terms: TermSpace
    coefficients: np.ndarray  # classes × columns
    intercepts: np.ndarray  # one per class
    rows: np.ndarray  # the passage row of each class, ascending

    def decision_values(self, terms: Sequence[str]) -> np.ndarray:
        """Each class's decision value for a question (higher: more like that passage's examples)."""
        columns, values = self.terms.vector(terms)
        return self.intercepts + (values @ self._by_column[columns] if columns else 0.0)

    @cached_property
    def _by_column(self) -> np.ndarray:
        """The coefficients column by column (one contiguous row per term): a question picks a few."""
        return np.ascontiguousarray(self.coefficients.T, dtype=np.float64)  # float64 like the question's weights

    def support(self, rows: Sequence[int], terms: Sequence[str]) -> list[float]:
        """How strongly the question points at each of these passage rows, from 0 to 1 (a logistic
        curve over the decision value; 0 for a passage without a class, which no example supports)."""
        values = self.decision_values(terms).tolist()
        class_of = self._class_of
        return [1.0 / (1.0 + math.exp(-SUPPORT_SLOPE * values[class_of[row]])) if row in class_of else 0.0 for row in rows]

    @cached_property
    def _class_of(self) -> dict[int, int]:
        return {row: number for number, row in enumerate(self.rows.tolist())}

    @classmethod
    def fit(cls, questions: Sequence[Sequence[str]], rows: Sequence[int], min_df: int = 1) -> PassageClassifier | None:
        """Fitted on the terms of example questions and their passage rows; None with too few."""
        if len(questions) < MIN_PASSAGE_EXAMPLES or len(set(rows)) < 2:
            return None
        from sklearn.svm import LinearSVC

        try:
            matrix, space = TermSpace.fitted(questions, min_df)
        except ValueError:  # no term is in enough questions (scikit-learn: "no terms remain")
            return None
        model = LinearSVC(C=PASSAGE_REGULARISATION, random_state=0).fit(matrix, list(rows))
        coefficients, intercepts = model.coef_, model.intercept_
        if len(model.classes_) == 2:  # scikit-learn keeps one column for two classes: spell both out
            coefficients, intercepts = np.vstack([-coefficients, coefficients]), np.r_[-intercepts, intercepts]
        return cls(space, coefficients.astype(np.float32), intercepts.astype(np.float64), model.classes_.astype(np.int64))


@dataclass(frozen=True, eq=False)
class ExampleModels:
    """The classifiers fitted on one set of example questions, and the fingerprint of that set."""

    fingerprint: str
    topic: TopicClassifier | None
    passages: PassageClassifier | None  # reads analysed terms
    spelling: PassageClassifier | None  # reads spelling_pieces

    @classmethod
    def fit(
        cls,
        fingerprint: str,
        on_topic: Sequence[str],
        rows: Sequence[int],
        off_topic: Sequence[str],
        terms_of: Callable[[str], Sequence[str]],
    ) -> ExampleModels:
        """Fitted on on-topic questions with their passage rows, and off-topic questions."""
        on_terms, off_terms = [terms_of(q) for q in on_topic], [terms_of(q) for q in off_topic]
        pieces = [spelling_pieces(q) for q in on_topic]
        return cls(
            fingerprint,
            TopicClassifier.fit(on_terms, off_terms),
            PassageClassifier.fit(on_terms, rows),
            PassageClassifier.fit(pieces, rows, min_df=SPELLING_MIN_QUESTIONS),
        )

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"fingerprint": np.array(self.fingerprint)}
        if self.topic:
            arrays |= _space_arrays("topic", self.topic.terms)
            arrays |= {"topic_coefficients": self.topic.coefficients, "topic_intercept": np.array(self.topic.intercept)}
        for prefix, classifier in (("passage", self.passages), ("spelling", self.spelling)):
            if classifier:
                arrays |= _space_arrays(prefix, classifier.terms)
                arrays |= {
                    f"{prefix}_coefficients": classifier.coefficients,
                    f"{prefix}_intercepts": classifier.intercepts,
                    f"{prefix}_rows": classifier.rows,
                }
        with path.open("wb") as file:
            np.savez(file, **arrays)

    @classmethod
    def load(cls, path: Path) -> ExampleModels:
        """The models save() wrote; ValueError (or OSError) when the file is not, or not whole."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"damaged ({error})") from None
        def passage_classifier(prefix: str) -> PassageClassifier | None:
            if f"{prefix}_terms" not in arrays:
                return None
            return PassageClassifier(
                _space(arrays, prefix), arrays[f"{prefix}_coefficients"], arrays[f"{prefix}_intercepts"], arrays[f"{prefix}_rows"]
            )

        try:
            topic = None
            if "topic_terms" in arrays:
                topic = TopicClassifier(_space(arrays, "topic"), arrays["topic_coefficients"], float(arrays["topic_intercept"]))
            return cls(str(arrays["fingerprint"]), topic, passage_classifier("passage"), passage_classifier("spelling"))
        except (KeyError, TypeError) as error:
            raise ValueError(f"not saved example models ({error})") from None


def _space_arrays(prefix: str, space: TermSpace) -> dict[str, np.ndarray]:
    terms = sorted(space.vocabulary, key=space.vocabulary.__getitem__)
    return {f"{prefix}_terms": np.array(terms, dtype=str), f"{prefix}_idf": space.idf}


def _space(arrays: dict[str, np.ndarray], prefix: str) -> TermSpace:
    terms = arrays[f"{prefix}_terms"].tolist()
    return TermSpace({term: column for column, term in enumerate(terms)}, arrays[f"{prefix}_idf"])
