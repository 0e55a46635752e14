"""Kinds of answer a question asks for (bot.answer_kinds) and what they do to the answer-or-decline model."""

from __future__ import annotations

import re
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
        ("so who was lou gehrig", "person or name"),
        ("what's the usual mestinon dose for MG", "dose"),
        ("how many mg of mestinon can i take", "dose"),
        ("how much does a thymectomy cost", "price"),
        ("how long does it take to get over guillain barre", "duration"),
        ("is myasthenia gravis hereditary", "heredity"),
        ("will my kids get it", "heredity"),
        ("is polymyositis catching", "contagion"),
        ("what is the life expectancy with als", "life expectancy"),
        ("what is a normal calcium level in the blood", "lab value"),
        ("at what age does parsonage turner syndrome usually start", "age"),
        ("are there any clinical trials for monomelic amyotrophy", "research"),
        ("where can I buy leeches", "place"),
        ("can cats get myasthenia gravis", "animal"),
        ("my old labrador's back legs seem weak", "animal"),
        ("do horses get polymyositis", "animal"),
        ("how much salt can my dad have with his heart failure", "amount"),
        ("how much water should I drink a day", "amount"),
        ("tell me a joke about weak muscles", "creative"),
        ("write me a short poem about myasthenia", "creative"),
        ("how many minutes should I leave ice on my elbow", "time in numbers"),
        ("how many months does it take to recover from guillain barre", "time in numbers"),
        ("how often should i do the hand exercises", "frequency"),
        ("how many times a day should i drink the mint tea", "frequency"),
        ("which brand of ice pack is best for tennis elbow", "brand or model"),
        ("which TENS unit model is best after a stroke", "brand or model"),
        ("what time of day should i take my myasthenia tablets", "time of day"),
        ("what CRP level is too high", "lab value"),
        ("at what exact age do children get myasthenia", "age"),
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
        "my mum who was always active now can't climb stairs",  # a relative clause, not "who was X?"
        "i take 60mg of mestinon and still feel weak",  # a dose taken, not one asked for
        "why does my friend take a different dose of myasthenia tablets than me",
        "my husband can't walk the dog round the block any more, his legs are weak",
        "do i need a cat scan for weak legs",  # an animal word that is not about an animal
        "i get charley horses in my legs",
        "my son comes home from football weak as a kitten",
        "people in my support group have different medication",
        "which hospital should i go to with sudden weakness",  # where to get help is answered
        "how many kinds of nerve compression are there",
        "how many times a year can myasthenia flare up",
        "what is this kind of weakness called",
        "how much better can I expect to feel after treatment",
        "is polymyositis an infectious disease",  # what kind of disease, not whether it spreads
        "is it normal for my energy levels to drop when my muscles are weak",  # not a measurement
        "will my kids have to look after me",  # not heredity
        "can my daughter have polymyositis at 12",
        "how often is surgery needed for a pinched nerve in the spine",  # how common, not how often to do it
        "what can make myasthenic syndrome develop",  # "make" is no brand
        "best shoes for tired weak legs",
        "my muscles ached and felt weak after eating something bad",  # no time of day asked
    ],
)
def test_ordinary_questions_ask_for_no_special_kind(question: str) -> None:
    assert _missing(question) == []


def test_evidence_in_the_passage_satisfies_the_kind() -> None:
    dated = Passage("t-2", "t.txt", "History", "Myasthenia gravis was described by Thomas Willis in 1672.")
    assert _missing("in what year was myasthenia gravis first described?", dated) == []
    assert _missing("who first described myasthenia gravis?", dated) == []
    duck = Passage("t-3", "t.txt", "Gait", "Their gait takes on a so-called “duck” walk.")
    assert _missing("why do ducks waddle", duck) == []  # the passage mentions the same animal
    assert _missing("why do ducks waddle") == ["animal"]
    listed = Passage("t-4", "t.txt", "Nerves", "The nerves of the arm:\n  • radial;\n  • ulnar;")
    assert _missing("how many nerves are in the arm", listed) == []  # a list can be counted
    assert _missing("how many nerves are in the arm") == ["count"]


def test_evidence_must_be_about_the_kind_not_a_word_that_happens_to_match() -> None:
    genes = Passage("t-5", "t.txt", "Causes", "Certain genetic disorders and the transmission of nerve impulses.")
    assert _missing("is myasthenia gravis hereditary", genes) == ["heredity"]
    assert _missing("is myasthenia gravis contagious", genes) == ["contagion"]
    at_fever = Passage("t-6", "t.txt", "Fever", "A temperature above 38.5 degrees; many people die within 3 to 5 years.")
    assert _missing("at what age does als usually start", at_fever) == ["age"]  # numbers, but no ages
    course = Passage("t-7", "t.txt", "Polymyositis", "Polymyositis cannot be completely cured.")
    assert _missing("how long does polymyositis last", course) == []  # the course answers it
    slow = Passage("t-10", "t.txt", "Nerves", "Recovery occurs on its own, although it is a slow process.")
    assert _missing("how long does a compressed nerve take to recover", slow) == []  # "a slow process" answers how long...
    assert _missing("how many months does a compressed nerve take to recover", slow) == ["time in numbers"]  # ...not how many months
    timed = Passage("t-11", "t.txt", "ALS", "Many people with ALS die within 3 to 5 years; rest for 20–30 minutes.")
    assert _missing("how many years do people live with als", timed) == []
    assert _missing("how many minutes should i rest", timed) == []


def test_evidence_counts_only_in_a_passage_about_the_subject() -> None:
    dated = Passage("t-8", "t.txt", "History", "It was first described in 1672.")
    question = tuple(words("in what year was myasthenia gravis first described"))
    assert missing_kinds(KINDS, question, dated, about_the_subject=lambda: True) == []
    assert missing_kinds(KINDS, question, dated, about_the_subject=lambda: False) == ["date"]
    asked = []
    assert missing_kinds(KINDS, tuple(words("what is als")), dated, lambda: asked.append(1) or True) == []
    assert asked == []  # only asked when a cue matched


def test_a_follow_up_is_still_about_the_subject_it_borrowed(chatbot: Chatbot) -> None:
    conversation = Conversation()
    assert chatbot.reply("what is myasthenia gravis", conversation).answered
    # the ALS passage's "die within 3 to 5 years" is not about myasthenia gravis, asked as a follow-up too
    assert not chatbot.reply("what is the life expectancy with it?", conversation).answered


def test_same_words_compare_singular_and_plural() -> None:
    puppies = Passage("t-9", "t.txt", "Pets", "Puppies sleep a lot.")
    assert _missing("can my puppy get weak legs", puppies) == []
    assert _missing("can my puppy get weak legs") == ["animal"]


def test_the_bundled_model_weighs_a_missing_kind_against_answering() -> None:
    models = load_abstention_models()
    assert models.with_examples.weights["missing_answer_kind"] < 0
    assert models.without_examples.weights["missing_answer_kind"] < 0


def test_an_exact_answer_the_passage_lacks_is_declined_however_well_it_matches(
    chatbot: Chatbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    question = "how many months does it take to recover from guillain barre"
    result = chatbot.search(question)
    gbs = result.hits[0].passage
    assert "guillain" in gbs.section.casefold()  # the right topic...
    assert chatbot.lacking_exact_answer(result).name == "time in numbers"  # ...but no figure in it
    monkeypatch.setattr(chatbot, "confident", lambda *args: True)  # however sure the model is
    reply = chatbot.reply(question, Conversation())
    assert not reply.answered and reply.lacking == "time in numbers"
    assert f"covers “{gbs.section}”, but it does not give a number of minutes, days, weeks or years" in reply.text()
    assert reply.suggestions == (gbs.section,)  # offered instead, to read what the text does say
    assert chatbot.section_reply(gbs.section, Conversation()).answered
    # a kind that is not exact ("is it contagious") is weighed by the model, not decisive
    assert chatbot.lacking_exact_answer(chatbot.search("is myasthenia gravis contagious")) is None
    assert chatbot.lacking_exact_answer(chatbot.search("how many years do people with als live")) is None  # "3 to 5 years"


def test_an_exact_kind_is_left_out_of_the_weighed_feature(chatbot: Chatbot) -> None:
    # The model is fitted without the questions the exact rule declines, so it never weighs an exact kind:
    # whether the passage fits is then judged as if the figure had not been asked for.
    figure = chatbot.search("how many people get ALS each year")
    assert chatbot.lacking_exact_answer(figure) is not None and chatbot.match_features(figure)["missing_answer_kind"] == 0
    loose = chatbot.search("is myasthenia gravis contagious")
    assert chatbot.lacking_exact_answer(loose) is None and chatbot.match_features(loose)["missing_answer_kind"] == 1


def test_the_offered_topic_opens_at_the_passage_that_fit(chatbot: Chatbot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chatbot, "confident", lambda *args: True)
    conversation = Conversation()
    declined = chatbot.reply("which brand of ice pack is best for tennis elbow", conversation)
    fit = declined.candidates[0].passage
    assert declined.lacking == "brand or model" and declined.suggestions == (fit.section,)
    first = chatbot.section_reply(fit.section, Conversation()).hits[0].passage
    assert first != fit  # the section starts elsewhere ("Hand injury" opens with fractures)...
    assert chatbot.section_reply(fit.section, conversation).hits[0].passage == fit  # ...the offer opens at the fit
    assert chatbot.section_reply(fit.section, conversation).hits[0].passage == first  # after that, as usual


def test_an_urgent_question_for_a_missing_figure_still_leads_with_the_escalation(
    chatbot: Chatbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    question = "my speech is slurred, how many people get als each year"
    assert chatbot.lacking_exact_answer(chatbot.search(question)) is not None
    monkeypatch.setattr(chatbot, "confident", lambda *args: True)
    reply = chatbot.reply(question, Conversation())
    assert reply.urgent and reply.text().startswith("🚨 URGENT") and not reply.answered
    assert "does not give" not in reply.text() and not reply.suggestions  # the emergency comes alone


@pytest.mark.parametrize(
    "question",
    [
        "in wat year was myastenia gravis first discribed",  # read after typo correction
        "can my cat get guillain barre",
        "my old labrador's back legs seem weak",
        "write a haiku about muscle weakness",
        "how many people get ALS each year",
        "how much does a thymectomy cost",
        "is myasthenia gravis contagious",
        "how many minutes should I leave ice on my tennis elbow",
        "which brand of ice pack is best for tennis elbow",
        "how often should i do manual therapy for my weak legs",
        "at what age does ALS usually start",
        # the ALS passage's "die within 3 to 5 years" is not about myasthenia gravis
        "what is the life expectancy with myasthenia gravis",
    ],
)
def test_questions_for_a_kind_the_text_never_gives_are_declined(chatbot: Chatbot, question: str) -> None:
    result = chatbot.search(question)
    assert chatbot.match_features(result)["missing_answer_kind"] == 1 or chatbot.lacking_exact_answer(result)
    assert not chatbot.reply(question, Conversation()).answered


@pytest.mark.parametrize(
    ("question", "answered"),
    [
        ("what is a duck walk", True),
        ("why do people with weak muscles walk like a duck", True),
        ("my mum who was always active now can't climb stairs", True),
        ("how many kinds of nerve compression are there", True),
        ("how long does polymyositis last", True),  # "cannot be completely cured" answers it
        # the kinds leave these alone; whether they are answered is up to the rest of the model
        ("what is the life expectancy with GBS", None),  # "most patients recover well" is no figure
        ("i take 60mg of mestinon and still feel weak", None),
        ("do i need a cat scan for weak legs", None),
    ],
)
def test_near_misses_of_the_cues_are_left_to_the_rest_of_the_model(
    chatbot: Chatbot, question: str, answered: bool | None
) -> None:
    assert chatbot.match_features(chatbot.search(question))["missing_answer_kind"] == 0
    if answered is not None:
        assert chatbot.reply(question, Conversation()).answered


def test_a_follow_up_is_read_for_what_it_asks_not_for_the_topic_it_borrows(chatbot: Chatbot) -> None:
    conversation = Conversation()
    conversation.topic = "famous myasthenia gravis"  # words of an earlier question
    borrowed = chatbot.search("can it be cured?", conversation)
    assert chatbot.lacking_exact_answer(borrowed).name == "person or name"  # the topic's "famous"
    own = chatbot.retriever.analyse("can it be cured?").words
    assert chatbot.lacking_exact_answer(borrowed, own) is None
    assert chatbot.match_features(borrowed, own)["missing_answer_kind"] == 0
    assert chatbot.reply("can it be cured?", conversation).answered


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[kinds]]\nname = 'x'\ncues = ['(unclosed']\n", "bad regular expression in `cues` of kind 'x'"),
        ("[[kinds]]\nname = 'x'\ncues = ['(?P<a>x)', '(?P<a>y)']\n", "bad regular expression in `cues`"),
        ("[[kinds]]\nname = 'x'\ncues = []\n", "needs `cues`"),
        ("[[kinds]]\ncues = ['a']\n", "needs a `name`"),
        ("[[kinds]]\nname = 'x'\ncues = 'a'\n", "must be a list"),
        ("[[kinds]]\nname = 'x'\ncues = ['a']\nevidense = ['b']\n", "unknown keys: evidense"),
        ("[[kinds]]\nname = 'x'\ncues = ['a']\nsame_words = true\n", "must be a string of words"),
        ("[[kinds]]\nname = 'x'\ncues = ['a']\nexact = true\n", "`exact` of kind 'x' must be a string"),
        ("[[kind]]\nname = 'x'\ncues = ['a']\n", "expected only [[kinds]] tables, found kind"),
        ("kinds = 5\n", "expected only [[kinds]] tables"),
        ("[[kinds]]\nname = 'x'\ncues = ['a{4294967296}']\n", "bad regular expression in `cues` of kind 'x' ('a{4294967296}')"),
        ("[[kinds]]\nname = 'x'\ncues = ['Who was']\n", "has upper-case letters"),
    ],
)
def test_a_malformed_kinds_file_is_a_one_line_data_error(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "answer_kinds.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError, match=re.escape(says)) as error:
        load_answer_kinds(str(path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_an_operator_can_switch_the_kinds_off_with_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "answer_kinds.toml"
    empty.write_text("# no kinds for this corpus\n", encoding="utf-8")
    assert load_answer_kinds(str(empty)) == ()
    result = run_bot("ask", "--json", "can cats get myasthenia gravis", env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [["ask", "what is als"], ["eval", "--split", "heldout"], ["calibrate"]])
def test_every_command_reports_a_broken_kinds_file_in_bot_data_dir_in_one_line(tmp_path: Path, command: list[str]) -> None:
    broken = tmp_path / "answer_kinds.toml"
    broken.write_text("[[kinds]]\nname = 'x'\ncues = ['(?P<a>x)', '(?P<a>y)']\n", encoding="utf-8")
    result = run_bot(*command, env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0]
    assert not (tmp_path / "abstention.toml").exists()  # calibrate stopped before writing
