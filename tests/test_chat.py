"""The core composes replies: escalation first, preamble always, passages quoted, never diagnosis."""

from __future__ import annotations

import time

from bot.chat import Chatbot, Conversation


def test_preamble_leads_every_ordinary_reply(chatbot: Chatbot) -> None:
    for message in ("what is ALS", "how do I bake bread", "", "   "):
        reply = chatbot.reply(message)
        assert reply.text().startswith(chatbot.messages["preamble"])


def test_escalation_comes_first_then_preamble_then_content(chatbot: Chatbot) -> None:
    reply = chatbot.reply("my speech is slurred and my arm is weak")
    text = reply.text()
    assert reply.urgent and [f.id for f in reply.red_flags] == ["speech"]
    assert text.startswith("🚨 URGENT")
    assert "Call 112 now" in text and "slurred or incoherent speech" in text
    assert text.index("Call 112") < text.index(chatbot.messages["preamble"])
    assert reply.answered and text.index(chatbot.messages["preamble"]) < text.index(reply.hits[0].passage.text)


def test_red_flags_are_checked_even_when_nothing_is_retrieved(chatbot: Chatbot) -> None:
    reply = chatbot.reply("xqzv blorp, she collapsed")
    assert reply.urgent and not reply.answered
    assert reply.text().startswith("🚨 URGENT")


def test_emergency_number_is_configurable(passages) -> None:
    bot = Chatbot(passages, emergency_number="911")
    text = bot.reply("she cannot speak properly").text()
    assert "Call 911 now" in text and "112" not in text


def test_passages_are_quoted_not_addressed_as_diagnosis(chatbot: Chatbot) -> None:
    text = chatbot.reply("what is myasthenia gravis").text()
    assert "the reference text says" in text
    assert "you have" not in text.lower().split("the reference text says")[0]
    assert "From “Myasthenia gravis”" in text


def test_empty_message_gets_a_prompt(chatbot: Chatbot) -> None:
    reply = chatbot.reply("  \n ")
    assert not reply.answered and "Please type a question" in reply.text()


def test_huge_message_is_truncated_and_answered_fast(chatbot: Chatbot) -> None:
    message = ("my legs feel weak after walking and I wonder why " * 25_000)[:1_000_000]
    started = time.perf_counter()
    reply = chatbot.reply(message)
    elapsed = time.perf_counter() - started
    assert "read only its first 2000 characters" in reply.text()
    assert len(reply.question) == 2000
    assert elapsed < 5  # generous bound for slow CI; `python -m bot bench` reports the real figure


def test_red_flag_beyond_the_answered_part_is_still_seen(chatbot: Chatbot) -> None:
    message = "my legs are weak. " * 500 + "now my face is drooping on one side"
    reply = chatbot.reply(message)
    assert reply.urgent and "one_sided" in [f.id for f in reply.red_flags]


def test_conversation_records_the_topic(chatbot: Chatbot) -> None:
    conversation = Conversation()
    chatbot.reply("what is guillain barre syndrome", conversation)
    assert conversation.last_hits and "GBS" in conversation.last_hits[0].passage.text
