"""The topic classifier: fitted on the example questions, applied from its weights, cached with the index."""

from __future__ import annotations

import math

import pytest

from bot.chat import Chatbot
from bot.corpus import Passage
from bot.examples import Example
from bot.retrieval import Retriever
from bot.topic import MIN_PER_CLASS, TopicClassifier

ON = [f"why are my {part} muscles weak {n}".split() for n, part in enumerate(["leg", "arm", "neck", "hand"] * 8)]
OFF = [f"best {dish} recipe for dinner {n}".split() for n, dish in enumerate(["cake", "soup", "pasta", "fish"] * 8)]


def test_its_log_odds_are_those_of_the_fitted_scikit_learn_model() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    classifier = TopicClassifier.fit(ON, OFF)
    assert classifier is not None
    vectorizer = TfidfVectorizer(analyzer=list, sublinear_tf=True)
    model = LogisticRegression(class_weight="balanced", max_iter=5000).fit(vectorizer.fit_transform(ON + OFF), [1] * 32 + [0] * 32)
    for terms in (["weak", "leg"], ["cake", "recipe", "recipe"], ["weak", "soup"], ["unknown"], []):
        expected = model.decision_function(vectorizer.transform([terms]))[0]
        assert classifier.log_odds(terms) == pytest.approx(expected, abs=1e-4)
    assert classifier.log_odds(["muscles", "weak"]) > 0 > classifier.log_odds(["dinner", "recipe"])
    # A word it never saw still counts in the vector's length, at the highest IDF: it dilutes the evidence.
    known = [classifier.weights[t][0] for t in ("weak", "leg")]
    shrink = math.hypot(*known) / math.hypot(*known, classifier.unseen_idf)
    expected = model.intercept_[0] + (model.decision_function(vectorizer.transform([["weak", "leg"]]))[0] - model.intercept_[0]) * shrink
    assert classifier.log_odds(["weak", "leg", "espresso"]) == pytest.approx(expected, abs=1e-4)


def test_too_few_questions_on_either_side_give_no_classifier() -> None:
    assert TopicClassifier.fit(ON, OFF[: MIN_PER_CLASS - 1]) is None
    assert TopicClassifier.fit([], OFF) is None


def test_saved_weights_round_trip_and_bad_ones_are_refused() -> None:
    classifier = TopicClassifier.fit(ON, OFF)
    assert TopicClassifier.from_json(classifier.to_json()) == classifier
    broken = classifier.to_json() | {"intercept": math.nan}
    with pytest.raises(ValueError, match="finite"):
        TopicClassifier.from_json(broken)
    with pytest.raises(ValueError):
        TopicClassifier.from_json({"weights": []})


def test_the_bundled_examples_teach_what_the_corpus_is_about(chatbot: Chatbot) -> None:
    topic = chatbot.retriever.topic
    terms = lambda q: chatbot.retriever.analyzer(chatbot.retriever.analyse(q).search_text)  # noqa: E731
    assert topic.log_odds(terms("why do my legs feel weak after a walk")) > 0
    assert topic.log_odds(terms("lemon drizzle cake recipe")) < 0


def test_a_corpus_with_no_off_topic_examples_has_no_classifier(passages: list[Passage]) -> None:
    first = passages[0]
    phrase = first.text[:30]
    retriever = Retriever(passages, examples=[Example(f"question {n} on weakness", phrase, first.section) for n in range(30)])
    assert len(retriever.examples) == 30 and retriever.topic is None


def test_the_fitted_classifier_is_cached_with_the_index(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BOT_CACHE_DIR", str(tmp_path))
    first = Chatbot.from_corpus("corpus").retriever.topic
    [saved] = tmp_path.rglob("topic-classifier-*.json")
    import bot.topic

    monkeypatch.setattr(bot.topic.TopicClassifier, "fit", classmethod(lambda *a: pytest.fail("fitted again")))
    assert Chatbot.from_corpus("corpus").retriever.topic == first and saved.is_file()
