"""Kinds of answer a question asks for (bot.answer_kinds) and what they do to the answer-or-decline model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.abstention import load_abstention_models
from bot.answer_kinds import load_answer_kinds, missing_kinds
from bot.chat import Chatbot, Conversation
from bot.corpus import Passage
from bot.retrieval import DataFileError
from bot.text import words
from tests.test_cli import run_bot

KINDS = load_answer_kinds()
PLAIN = Passage("t-1", "t.txt", "Myasthenia gravis", "Myasthenia gravis is an autoimmune disease of the synapses.")


def _missing(question: str, passage: Passage = PLAIN) -> list[str]:
    return missing_kinds(KINDS, tuple(words(question)), passage)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("in what year was myasthenia gravis first described?", "date"),
        ("when was polymyositis first discovered", "date"),
        ("who were Guillain and Barre?", "person or name"),
        ("which celebs have myasthenia gravis", "person or name"),
        ("why is it called tennis elbow", "person or name"),
        ("how many people in the UK have ALS", "prevalence"),
        ("how many vertebrae does a giraffe have", "count"),
        ("what's the usual mestinon dose for MG", "dose"),
        ("is 60mg of mestinon a lot", "dose"),
        ("how much does a thymectomy cost", "price"),
        ("where can I buy leeches", "place"),
        ("can cats get myasthenia gravis", "animal"),
        ("how much salt can my dad have with his heart failure", "amount"),
        ("how much water should I drink a day", "amount"),
        ("tell me a joke about weak muscles", "creative"),
        ("write me a short poem about myasthenia", "creative"),
    ],
)
def test_a_question_asking_for_a_kind_the_passage_lacks_is_flagged(question: str, kind: str) -> None:
    assert kind in _missing(question)


@pytest.mark.parametrize(
    "question",
    [
        "what is myasthenia gravis",
        "when is surgery needed for a compressed nerve",  # a situation, not a date
        "who is most likely to get myasthenia gravis",
        "why does my friend take a different dose of myasthenia tablets than me",
        "my husband can't walk the dog round the block any more, his legs are weak",
        "people in my support group have different medication",
        "what is this kind of weakness called",
        "my son comes home from football weak as a kitten",  # a simile describes a person
        "my legs ache after work but otherwise I'm healthy as a horse",
        "how much better can I expect to feel after treatment",
    ],
)
def test_ordinary_questions_ask_for_no_special_kind(question: str) -> None:
    assert _missing(question) == []


def test_evidence_in_the_passage_satisfies_the_kind() -> None:
    dated = Passage("t-2", "t.txt", "History", "Myasthenia gravis was described by Thomas Willis in 1672.")
    assert _missing("in what year was myasthenia gravis first described?", dated) == []
    assert _missing("who first described myasthenia gravis?", dated) == []
    duck = Passage("t-3", "t.txt", "Gait", "Their gait takes on a so-called “duck” walk.")
    assert _missing("why do people with weak muscles walk like a duck", duck) == []
    listed = Passage("t-4", "t.txt", "Causes", "Common causes:\n  • stroke;\n  • diabetes;")
    assert _missing("how many common causes of arm weakness are there", listed) == []
    assert _missing("how many common causes of arm weakness are there") == ["count"]


def test_the_bundled_model_weighs_a_missing_kind_against_answering() -> None:
    models = load_abstention_models()
    assert models.with_examples.weights["missing_answer_kind"] < 0
    assert models.without_examples.weights["missing_answer_kind"] < 0


@pytest.mark.parametrize(
    "question",
    [
        "what year did myasthenia gravis get its name",
        "can my cat get guillain barre",
        "write a haiku about muscle weakness",
        "how many people get ALS each year",
    ],
)
def test_questions_for_a_kind_the_text_never_gives_are_declined(chatbot: Chatbot, question: str) -> None:
    assert not chatbot.reply(question, Conversation()).answered


@pytest.mark.parametrize("question", ["what is a duck walk", "why does my friend take a different dose of myasthenia tablets"])
def test_near_misses_of_the_cues_are_still_answered(chatbot: Chatbot, question: str) -> None:
    assert chatbot.reply(question, Conversation()).answered


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[kinds]]\nname = 'x'\ncues = ['(unclosed']\n", "bad regular expression in `cues`"),
        ("[[kinds]]\nname = 'x'\ncues = []\n", "needs `cues`"),
        ("[[kinds]]\ncues = ['a']\n", "need a `name`"),
        ("[[kinds]]\nname = 'x'\ncues = 'a'\n", "must be a list"),
    ],
)
def test_a_malformed_kinds_file_is_a_one_line_data_error(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "answer_kinds.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError, match=says.replace("[", r"\[").replace("(", r"\(")):
        load_answer_kinds(str(path))


def test_the_cli_reports_a_broken_kinds_file_in_bot_data_dir_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "answer_kinds.toml").write_text("[[kinds]]\nname = 'x'\ncues = ['(']\n", encoding="utf-8")
    result = run_bot("ask", "what is als", env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "answer_kinds.toml" in lines[0] and "Traceback" not in result.stderr
