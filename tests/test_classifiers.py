"""The classifiers fitted on the example questions: applied from their weights, cached with the index."""

from __future__ import annotations

import numpy as np
import pytest

from bot.chat import Chatbot
from bot.classifiers import MIN_PER_CLASS, ExampleModels, PassageClassifier, TopicClassifier, spelling_pieces
from bot.corpus import Passage
from bot.examples import Example
from bot.retrieval import Retriever

ON = [f"why are my {part} muscles weak {n}".split() for n, part in enumerate(["leg", "arm", "neck", "hand"] * 8)]
OFF = [f"best {dish} recipe for dinner {n}".split() for n, dish in enumerate(["cake", "soup", "pasta", "fish"] * 8)]
ROWS = [n % 4 * 10 for n in range(len(ON))]  # leg → 0, arm → 10, neck → 20, hand → 30


def _sklearn_tfidf(documents):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer=list, sublinear_tf=True)
    return vectorizer, vectorizer.fit_transform(documents)


def test_topic_log_odds_are_those_of_the_fitted_scikit_learn_model() -> None:
    from sklearn.linear_model import LogisticRegression

    classifier = TopicClassifier.fit(ON, OFF)
    vectorizer, matrix = _sklearn_tfidf(ON + OFF)
    model = LogisticRegression(class_weight="balanced", max_iter=5000).fit(matrix, [1] * 32 + [0] * 32)
    for terms in (["weak", "leg"], ["cake", "recipe", "recipe"], ["weak", "soup"], []):
        expected = model.decision_function(vectorizer.transform([terms]))[0]
        assert classifier.log_odds(terms) == pytest.approx(expected, abs=1e-6)
    assert classifier.log_odds(["muscles", "weak"]) > 0 > classifier.log_odds(["dinner", "recipe"])
    # A word it never saw still counts in the vector's length, at the highest IDF: it dilutes the evidence.
    known = [classifier.terms.idf[classifier.terms.vocabulary[t]] for t in ("weak", "leg")]
    shrink = np.hypot(*known) / np.sqrt(sum(k * k for k in known) + classifier.terms.unseen_idf**2)
    evidence = model.decision_function(vectorizer.transform([["weak", "leg"]]))[0] - model.intercept_[0]
    assert classifier.log_odds(["weak", "leg", "espresso"]) == pytest.approx(model.intercept_[0] + evidence * shrink, abs=1e-6)


def test_passage_decision_values_are_those_of_the_fitted_linear_svm() -> None:
    from sklearn.svm import LinearSVC

    classifier = PassageClassifier.fit(ON, ROWS)
    vectorizer, matrix = _sklearn_tfidf(ON)
    model = LinearSVC(random_state=0).fit(matrix, ROWS)
    assert classifier.rows.tolist() == [0, 10, 20, 30]
    for terms in (["weak", "neck"], ["arm", "arm", "unknown"], []):
        expected = model.decision_function(vectorizer.transform([terms]))[0]
        assert classifier.decision_values(terms) == pytest.approx(expected, abs=1e-5)
    assert classifier.rows[np.argmax(classifier.decision_values(["neck", "muscles"]))] == 20
    # two classes: scikit-learn keeps one column, the classifier spells out both
    two = PassageClassifier.fit(ON, [row % 20 for row in ROWS])
    assert two.rows.tolist() == [0, 10] and two.rows[np.argmax(two.decision_values(["arm"]))] == 10


def test_too_few_questions_give_no_classifier() -> None:
    assert TopicClassifier.fit(ON, OFF[: MIN_PER_CLASS - 1]) is None
    assert TopicClassifier.fit([], OFF) is None
    assert PassageClassifier.fit(ON[:5], ROWS[:5]) is None
    assert PassageClassifier.fit(ON, [7] * len(ON)) is None  # one passage only: nothing to tell apart
    # every term in fewer questions than min_df: nothing to learn from, not an error
    assert PassageClassifier.fit([[f"word{n}"] for n in range(30)], ROWS[:30], min_df=2) is None


def test_spelling_pieces_are_the_four_letter_pieces_of_each_padded_word() -> None:
    assert spelling_pieces("Weak, arm") == [" wea", "weak", "eak ", " arm", "arm "]
    assert spelling_pieces("a") == [" a "]  # shorter than a piece: the padded word


def test_the_spelling_classifier_copes_with_a_misspelling_the_word_one_misses() -> None:
    texts = [" ".join(t) for t in ON]
    models = ExampleModels.fit("x", texts, ROWS, [" ".join(t) for t in OFF], str.split)
    neck = models.spelling.rows.tolist().index(20)
    values = models.spelling.decision_values(spelling_pieces("my neckk musles"))
    assert int(np.argmax(values)) == neck
    # to the word classifier both words are unknown: only its intercepts speak
    assert models.passages.decision_values(["neckk", "musles"]) == pytest.approx(models.passages.intercepts)


def test_saved_models_load_the_same(tmp_path) -> None:
    texts, off = [" ".join(t) for t in ON], [" ".join(t) for t in OFF]
    models = ExampleModels.fit("abc", texts, ROWS, off, str.split)
    models.save(tmp_path / "m.npz")
    loaded = ExampleModels.load(tmp_path / "m.npz")
    assert loaded.fingerprint == "abc"
    for terms in (["weak", "leg"], ["cake", "espresso"]):
        assert loaded.topic.log_odds(terms) == pytest.approx(models.topic.log_odds(terms))
        assert loaded.passages.decision_values(terms) == pytest.approx(models.passages.decision_values(terms))
        pieces = spelling_pieces(" ".join(terms))
        assert loaded.spelling.decision_values(pieces) == pytest.approx(models.spelling.decision_values(pieces))
    ExampleModels.fit("none", texts[:3], ROWS[:3], [], str.split).save(tmp_path / "n.npz")
    empty = ExampleModels.load(tmp_path / "n.npz")
    assert (empty.fingerprint, empty.topic, empty.passages, empty.spelling) == ("none", None, None, None)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    whole = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])  # a save cut short
    for broken in ("bad.npz", "cut.npz"):
        with pytest.raises(ValueError):
            ExampleModels.load(tmp_path / broken)


def test_the_bundled_examples_teach_the_topic_and_the_passages(chatbot: Chatbot) -> None:
    retriever = chatbot.retriever
    terms = lambda q: retriever.analyzer(retriever.analyse(q).search_text)  # noqa: E731
    assert retriever.topic.log_odds(terms("why do my legs feel weak after a walk")) > 0
    assert retriever.topic.log_odds(terms("lemon drizzle cake recipe")) < 0
    classifier = retriever.passage_classifier
    best = classifier.rows[np.argmax(classifier.decision_values(terms("lou gehrig's disease life expectancy")))]
    assert "amyotrophic" in chatbot.passages[best].text.casefold() or "als" in chatbot.passages[best].section.casefold()


def test_a_corpus_with_no_off_topic_examples_has_no_topic_classifier(passages: list[Passage]) -> None:
    first = passages[0]
    phrase = first.text[:30]
    retriever = Retriever(passages, examples=[Example(f"question {n} on weakness", phrase, first.section) for n in range(30)])
    assert len(retriever.examples) == 30 and retriever.topic is None
    assert retriever.passage_classifier is None  # one passage: nothing to tell apart


def test_the_fitted_classifiers_are_cached_with_the_index(tmp_path, monkeypatch) -> None:
    import bot.classifiers
    import bot.retrieval

    monkeypatch.setenv("BOT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(bot.retrieval, "_FITTED_MODELS", {})
    first = Chatbot.from_corpus("corpus").retriever.example_models
    [saved] = tmp_path.rglob("example-models-*.npz")
    monkeypatch.setattr(bot.retrieval, "_FITTED_MODELS", {})  # as in a new process
    monkeypatch.setattr(bot.classifiers.ExampleModels, "fit", classmethod(lambda *a: pytest.fail("fitted again")))
    again = Chatbot.from_corpus("corpus").retriever.example_models
    assert again.fingerprint == first.fingerprint and saved.is_file()
    assert again.topic.log_odds(["weak"]) == pytest.approx(first.topic.log_odds(["weak"]))
    # a damaged file is fitted again (and replaced), never a failed start
    saved.write_bytes(saved.read_bytes()[:1000])
    monkeypatch.undo()
    monkeypatch.setenv("BOT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(bot.retrieval, "_FITTED_MODELS", {})
    assert Chatbot.from_corpus("corpus").retriever.example_models.fingerprint == first.fingerprint
    assert ExampleModels.load(saved).fingerprint == first.fingerprint
