"""Follow-ups keep the topic; conversations are bounded and expire; ask --session is one conversation."""

from __future__ import annotations

import json

from bot.chat import Chatbot, Conversation
from tests.test_cli import run_bot


def test_follow_up_question_stays_on_the_topic(chatbot: Chatbot) -> None:
    conversation = Conversation()
    chatbot.reply("what is guillain barre syndrome", conversation)
    reply = chatbot.reply("can people recover from it?", conversation)
    assert reply.answered and "most patients recover well" in reply.hits[0].passage.text
    reply = chatbot.reply("is it life threatening", conversation)
    assert "GBS" in reply.hits[0].passage.text


def test_a_new_topic_replaces_the_old_one(chatbot: Chatbot) -> None:
    conversation = Conversation()
    chatbot.reply("what is guillain barre syndrome", conversation)
    chatbot.reply("what is polymyositis", conversation)
    reply = chatbot.reply("can it be cured?", conversation)
    assert "Polymyositis" in reply.hits[0].passage.text


def borrowed_guillain_barre(reply) -> bool:
    """Whether the question was searched with the words of an earlier GBS question (the passage alone
    can not tell: "can people recover from it?" may find the GBS passage by itself)."""
    return reply.analysis is not None and "guillain" in reply.analysis.words


def test_without_a_conversation_a_follow_up_has_no_topic(chatbot: Chatbot) -> None:
    conversation = Conversation()
    chatbot.reply("what is guillain barre syndrome", conversation)
    assert borrowed_guillain_barre(chatbot.reply("can people recover from it?", conversation))
    assert not borrowed_guillain_barre(chatbot.reply("can people recover from it?"))


def test_conversation_is_bounded_and_expires(chatbot: Chatbot) -> None:
    now = [1000.0]
    conversation = Conversation(clock=lambda: now[0], max_turns=3)
    for question in ("what is ALS", "what is a stroke", "tennis elbow", "polymyositis", "guillain barre"):
        chatbot.reply(question, conversation)
    assert conversation.history == ["tennis elbow", "polymyositis", "guillain barre"]
    now[0] += 29 * 60
    chatbot.reply("what is guillain barre syndrome", conversation)
    assert conversation.topic
    now[0] += 31 * 60
    reply = chatbot.reply("can people recover from it?", conversation)
    assert conversation.history == ["can people recover from it?"]
    assert not borrowed_guillain_barre(reply)


def test_ask_session_treats_stdin_lines_as_one_conversation() -> None:
    stdin = "what is guillain barre syndrome\ncan people recover from it?\n"
    session = run_bot("ask", "--json", "--session", stdin=stdin)
    assert session.returncode == 0, session.stderr
    second = json.loads(session.stdout.splitlines()[1])
    assert second["answered"] and "most patients recover well" in second["passages"][0]["text"]
    assert set(second["explanation"]) == {
        "corrections", "expansions", "matched_terms", "similar_question", "similar_question_score", "classifier_score"
    }
    alone = run_bot("ask", "--json", stdin=stdin)
    second_alone = json.loads(alone.stdout.splitlines()[1])
    assert "guillain" not in second_alone["explanation"]["matched_terms"]  # [] when declined
    assert "guillain" in second["explanation"]["matched_terms"]


def test_close_passages_of_different_sections_are_offered_as_choices(passages) -> None:
    bot = Chatbot(passages, ambiguity_margin=1.0)
    reply = bot.reply("can hurting your arm cause it to go weak")
    assert not reply.answered and len(reply.choices) == 2
    assert reply.choices[0].passage.section != reply.choices[1].passage.section
    assert list(reply.suggestions) == [h.passage.section for h in reply.choices]
    assert "1. " in reply.text() and "2. " in reply.text()


def test_more_after_the_idle_timeout_has_no_earlier_question(chatbot: Chatbot) -> None:
    now = [0.0]
    conversation = Conversation(clock=lambda: now[0])
    assert chatbot.reply("what is guillain barre syndrome", conversation).answered
    assert chatbot.more(conversation).notices == ()  # the next-best passage
    now[0] += conversation.idle_timeout + 1
    assert chatbot.more(conversation).notices == (chatbot.messages["no_question"],)
