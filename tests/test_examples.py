"""Example questions: tied to passages by phrase and section, matched by TF-IDF, never leaked into eval."""

from __future__ import annotations

import pytest

from bot.chat import Chatbot, Conversation
from bot.corpus import Passage
from bot.evaluation import DEFAULT_QUESTIONS, Item, evaluate, load_items, near_copy_groups, reading
from bot.examples import Example, ExampleFileError, ExampleIndex, parse_examples, tie_to_passages
from bot.retrieval import DataFileError, Retriever, load_examples
from bot.text import words

ALS = "ALS is a type of motor neuron disease"


def _passage(passages: list[Passage], phrase: str) -> Passage:
    return next(p for p in passages if phrase in p.text)


def test_examples_are_tied_by_phrase_within_their_section(passages: list[Passage]) -> None:
    als = _passage(passages, ALS)
    tied = tie_to_passages(
        [
            Example("lou gehrig", ALS, als.section),
            Example("wrong section", ALS, "Myasthenia gravis"),
            Example("phrase not in the corpus", "made-up words nobody wrote", als.section),
        ],
        passages,
    )
    assert [(passages[row].id, e.question) for row, e in tied] == [(als.id, "lou gehrig")]


def test_nearest_example_scores_its_passage_by_cosine(passages: list[Passage]) -> None:
    als = _passage(passages, ALS)
    terms = lambda q: words(q)  # noqa: E731
    index = ExampleIndex.build(
        [Example("hands going wasted and thin", ALS, als.section)], passages, terms
    )
    assert len(index) == 1
    same = index.nearest(terms("hands going wasted and thin"))
    assert list(same) == [passages.index(als)] and same[passages.index(als)][0] == pytest.approx(1.0)
    partial = index.nearest(terms("thin hands and a headache"))
    assert 0 < partial[passages.index(als)][0] < 1  # a word the examples lack still counts in the norm
    assert index.nearest(terms("completely unrelated")) == {}


def test_off_topic_examples_say_how_much_a_question_reads_like_one_the_corpus_leaves_out(
    passages: list[Passage],
) -> None:
    als = _passage(passages, ALS)
    on, off = Example("what is als", ALS, als.section), Example("is als contagious", None)
    index = ExampleIndex.of_off_topic([on, off], words)
    assert index.questions == ["is als contagious"]  # on-topic examples are left out
    assert index.closest_overlap(words("is als contagious")) == pytest.approx(1.0)
    assert 0 < index.closest_overlap(words("is als contagious in children")) < 1
    assert index.closest_overlap(words("a duck walk")) == 0.0  # no shared word
    assert ExampleIndex.of_off_topic([], words).closest_overlap(words("anything")) == 0.0
    # only words the answering passage does not have count: the name of its subject says nothing
    hours = ExampleIndex.of_off_topic([Example("how many hours a day is movement therapy done", None)], words)
    name = words("movement therapy")
    assert hours.closest_overlap(words("movement therapy explained")) > 0.2
    assert hours.closest_overlap(words("movement therapy explained"), explained=name) == 0.0
    assert hours.closest_overlap(words("how many hours a day for movement therapy"), explained=name) > 0.3
    # an off-topic example that reads like an on-topic one after analysis is left out
    alike = ExampleIndex.of_off_topic([on, Example("what is als", None), off], words)
    assert alike.questions == ["is als contagious"] and alike.closest_overlap(words("what is als")) < 1
    # both ways: a short question inside a longer example shares all of its own words but little of the
    # example's, so "lemon balm tea" does not read like "lemon balm tea recipe, how long to steep"
    recipe = ExampleIndex.of_off_topic([Example("lemon balm tea recipe how long to steep", None), off], words)
    assert recipe.closest_overlap(words("lemon balm tea")) < 0.5
    assert recipe.closest_overlap(words("lemon balm tea recipe how long to steep")) == pytest.approx(1.0)


def test_off_topic_examples_count_only_next_to_on_topic_ones(passages: list[Passage]) -> None:
    als = _passage(passages, ALS)
    off = Example("is als contagious", None)
    alone = Retriever(passages, examples=[off])  # an operator's corpus the bundled examples do not fit
    assert alone.off_topic_examples.closest_overlap(alone.example_terms(off.question)) == 0.0
    taught = Retriever(passages, examples=[off, Example("what is als", ALS, als.section)])
    assert taught.off_topic_examples.closest_overlap(taught.example_terms(off.question)) == pytest.approx(1.0)


def test_a_close_example_question_brings_its_passage_first(passages: list[Passage]) -> None:
    als = _passage(passages, ALS)
    question = "the illness that stephen hawking had"
    plain = Retriever(passages, examples=[])
    taught = Retriever(passages, examples=[Example(question, ALS, als.section)])
    assert plain.search(question).hits[0].passage != als  # the words alone do not find it
    top = taught.search(question).hits[0]
    assert top.passage == als and top.example == question and top.example_similarity > 0.99


def test_bundled_examples_are_the_dev_split(chatbot: Chatbot, passages: list[Passage]) -> None:
    items = load_items(DEFAULT_QUESTIONS)
    examples = load_examples()
    dev = [i for i in items if i.split == "dev"]
    # Every dev question, in order, with its best phrase; off-topic ones too (they teach the topic classifier).
    assert [(e.question, e.answer_contains) for e in examples] == [(i.question, i.phrases[0] if i.on_topic else None) for i in dev]
    on_topic = [e for e in examples if e.on_topic]
    assert len(tie_to_passages(examples, passages)) == len(on_topic)  # none is silently lost
    # No example reads the same as a held-out question after analysis ("myasthinia" = "myastenia"), nor
    # as one of the detail questions, which are measured but not trained on.
    read_as = lambda q: frozenset(chatbot.retriever.example_terms(q))  # noqa: E731
    unseen = {read_as(i.question) for i in items if i.split == "heldout"}
    unseen |= {read_as(i.question) for i in load_items(DEFAULT_QUESTIONS.with_name("detail_questions.jsonl"))}
    assert not unseen & {read_as(e.question) for e in examples}


def test_examples_in_the_question_set_format_are_accepted(passages: list[Passage]) -> None:
    als = _passage(passages, ALS)
    lines = (
        '{"question": "lou gehrig", "answer_contains": ["' + ALS + '", "other phrase"], "split": "dev"}\n'
        '{"question": "bread", "answer_contains": null, "split": "dev"}\n'
    )
    examples = parse_examples(lines, "x")
    assert examples == [Example("lou gehrig", ALS, None), Example("bread", None)]  # the best phrase; off-topic kept
    # without a section it is looked for in every passage
    assert [(passages[row], e.question) for row, e in tie_to_passages(examples, passages)] == [(als, "lou gehrig")]


def test_evaluation_never_answers_a_question_with_its_own_example(passages: list[Passage]) -> None:
    als = _passage(passages, ALS)
    question = "the illness that stephen hawking had"
    bot = Chatbot(passages, retriever=Retriever(passages, examples=[Example(question, ALS, als.section)]))
    assert bot.reply(question, Conversation()).candidates[0].passage == als  # in use...
    [outcome] = evaluate(bot, [Item(question, ALS)])
    assert outcome.rank != 1  # ...but left out while that question is evaluated
    assert bot.retriever.examples.questions == [question]  # and restored afterwards


def test_near_copies_share_a_fold_so_neither_answers_the_other(passages: list[Passage]) -> None:
    als = _passage(passages, ALS)
    seen = "the illness that the famous physicist stephen hawking had"
    near_copy = "the illness that the famous physicist stephen hawking had for years"
    one = Chatbot(passages, retriever=Retriever(passages, examples=[Example(seen, ALS, als.section)]))
    assert one.reply(near_copy, Conversation()).candidates[0].passage == als  # an example answers its near copy
    both = [Example(seen, ALS, als.section), Example(near_copy, ALS, als.section)]
    bot = Chatbot(passages, retriever=Retriever(passages, examples=both))
    outcomes = evaluate(bot, [Item(seen, ALS), Item(near_copy, ALS)])
    assert [outcome.rank == 1 for outcome in outcomes] == [False, False]  # cross-validated, neither is helped


def test_near_copy_groups_join_paraphrases_and_nothing_else(chatbot: Chatbot) -> None:
    read = lambda q: reading(chatbot.retriever, q)  # noqa: E731
    questions = [
        "the illness that the famous physicist stephen hawking had",
        "the illness that the famous physicist stephen hawking had for years",  # a near copy of the first
        "which illness stephen hawking had",  # half the words of the first: not a copy
        "bread",
    ]
    group = near_copy_groups([read(q) for q in questions])
    names = [group[read(q)] for q in questions]
    assert names[0] == names[1] and len(set(names)) == 3
    assert near_copy_groups([]) == {} and near_copy_groups([""]) == {"": ""}


def test_malformed_example_lines_name_the_line() -> None:
    with pytest.raises(ExampleFileError, match=r"x:2:"):
        parse_examples('{"question": "q", "answer_contains": "p"}\n{"question": 3}\n', "x")


def test_a_malformed_example_file_is_a_data_file_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "example_questions.jsonl").write_text("not json\n", encoding="utf-8")
    monkeypatch.setenv("BOT_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFileError, match="example_questions.jsonl:1"):
        load_examples()
