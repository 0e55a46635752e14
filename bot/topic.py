"""Is a question about the corpus's subject at all? A linear classifier over the example questions.

It is fitted (TF-IDF and logistic regression, with scikit-learn) on the example questions: those tied to
a passage are on topic, the off-topic ones ("lemon drizzle cake recipe") are not. It learns which words
mark a question about something else ("recipe", "tyre", "diet") as well as which mark one about this
corpus. Its log-odds are one feature of the answer-or-decline model (bot.abstention); it never ranks
passages. Applying it needs only the weights, so a fitted classifier is kept with the cached index.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

# Fewer example questions than this on either side: no classifier (its log-odds would be noise).
MIN_PER_CLASS = 20
REGULARISATION = 1.0  # scikit-learn's C


@dataclass(frozen=True)
class TopicClassifier:
    intercept: float
    weights: dict[str, tuple[float, float]]  # term → (IDF, coefficient)

    def log_odds(self, terms: Sequence[str]) -> float:
        """Log-odds that a question with these analysed terms is on topic.

        As scikit-learn computes it, except that words the classifier never saw count in the vector's
        length: "why is my coffee so weak" is less sure to be on topic than "weak".
        """
        squares = evidence = 0.0
        for term, count in Counter(terms).items():
            idf, coefficient = self.weights.get(term) or (self.unseen_idf, 0.0)
            value = (1.0 + math.log(count)) * idf
            squares += value * value
            evidence += value * coefficient
        return self.intercept + (evidence / math.sqrt(squares) if squares else 0.0)

    @cached_property
    def unseen_idf(self) -> float:
        """A word no example question has weighs as much as the rarest one: it dilutes the evidence."""
        return max((idf for idf, _ in self.weights.values()), default=1.0)

    @classmethod
    def fit(cls, on_topic: Sequence[Sequence[str]], off_topic: Sequence[Sequence[str]]) -> TopicClassifier | None:
        """Fitted on the analysed terms of on- and off-topic questions; None with too few of either."""
        if min(len(on_topic), len(off_topic)) < MIN_PER_CLASS:
            return None
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vectorizer = TfidfVectorizer(analyzer=list, sublinear_tf=True)
        matrix = vectorizer.fit_transform([*on_topic, *off_topic])
        labels = [True] * len(on_topic) + [False] * len(off_topic)
        model = LogisticRegression(C=REGULARISATION, class_weight="balanced", max_iter=5000).fit(matrix, labels)
        coefficients = model.coef_[0]
        weights = {
            term: (round(float(vectorizer.idf_[column]), 6), round(float(coefficients[column]), 6))
            for term, column in sorted(vectorizer.vocabulary_.items())
        }
        return cls(round(float(model.intercept_[0]), 6), weights)

    def to_json(self) -> dict:
        return {"intercept": self.intercept, "weights": {term: list(pair) for term, pair in self.weights.items()}}

    @classmethod
    def from_json(cls, data: dict) -> TopicClassifier:
        """The classifier saved by to_json; ValueError when the data is not one."""
        try:
            intercept = float(data["intercept"])
            weights = {str(term): (float(idf), float(coefficient)) for term, (idf, coefficient) in data["weights"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError("not a saved topic classifier") from None
        if not all(math.isfinite(v) for pair in weights.values() for v in pair) or not math.isfinite(intercept):
            raise ValueError("a topic classifier weight is not a finite number")
        return cls(intercept, weights)
