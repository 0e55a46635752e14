"""The core: one message in, one composed reply out. Knows nothing about Telegram or terminals.

Order for every message: clean → red-flag check (always, first) → retrieval → compose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

from bot.abstention import AbstentionModels, load_abstention_models, match_features
from bot.answer_kinds import AnswerKind, first_exact, load_answer_kinds, missing_from_best_passage
from bot.corpus import Passage, load_passages
from bot.retrieval import (
    STOP_WORDS, DataFileError, Hit, QueryAnalysis, Retriever, SearchResult, load_toml, section_suggestions,
)
from bot.safety import DEFAULT_EMERGENCY_NUMBER, Lexicon, RedFlag, default_lexicon, detect_red_flags
from bot.text import clean_user_text, words

DEFAULT_CORPUS_DIR = Path(__file__).resolve().parent.parent / "corpus"
MAX_MESSAGE_CHARS = 2000
# Red flags are looked for well beyond the part that is answered; past this, scanning would be slow.
SAFETY_SCAN_CHARS = 100_000
# Below this cosine similarity the best passage is not a real answer: decline.
ANSWER_THRESHOLD = 0.12
# The typo note lists at most this many corrections, so replies stay short.
MAX_CORRECTIONS_SHOWN = 5
# When the two best passages are from different sections and this close, offer both as choices.
AMBIGUITY_MARGIN = 0.005
# A conversation keeps this many turns and forgets everything after this long without a message.
MAX_TURNS = 6
IDLE_TIMEOUT_SECONDS = 30 * 60
# Words that make a question lean on the previous one ("can it be cured?").
FOLLOW_UP_WORDS = frozenset({"it", "its", "this", "that", "these", "those", "they", "them", "their"})
REQUIRED_MESSAGES = (
    "preamble", "escalation", "answer_intro", "passage_heading", "decline", "urgent_no_answer",
    "empty", "truncated", "corrections", "help", "no_more", "no_question", "decline_detail",
)


@dataclass(frozen=True)
class Messages:
    """The fixed texts of bot/data/messages.toml."""

    texts: dict[str, str]

    @classmethod
    def load(cls, source: str | Path = "messages.toml") -> Messages:
        data = load_toml(source)
        missing = [key for key in REQUIRED_MESSAGES if not isinstance(data.get(key), str) or not data[key].strip()]
        if missing:
            raise DataFileError(f"data file {source}: missing or empty text for {', '.join(missing)}")
        return cls({key: value.strip() for key, value in data.items() if isinstance(value, str)})

    def __getitem__(self, key: str) -> str:
        return self.texts[key]


@dataclass(frozen=True)
class Block:
    """One paragraph of a reply; `kind` lets front ends style it (escalation, heading, passage, ...)."""

    kind: str
    text: str


@dataclass(frozen=True)
class Reply:
    question: str
    preamble: str
    escalation: str | None = None
    red_flags: tuple[RedFlag, ...] = ()
    notices: tuple[str, ...] = ()
    intro: str | None = None
    hits: tuple[Hit, ...] = ()
    decline: str | None = None
    suggestions: tuple[str, ...] = ()
    analysis: QueryAnalysis | None = None
    candidates: tuple[Hit, ...] = ()
    passage_heading: str = "From “{section}”:"
    choices: tuple[Hit, ...] = ()  # close passages of different sections, offered instead of a guess
    choices_intro: str = "Your question fits more than one topic. Which one do you mean?"
    lacking: str | None = None  # declined for this exact kind of answer the best passage cannot give ("dose")

    def explanation(self) -> dict[str, object]:
        """Why the top passage matched: corrected words, synonym expansions, words in common, the
        closest known example question that points at it, and the classifiers' support."""
        top = self.hits[0] if self.hits else (self.choices[0] if self.choices else None)
        analysis = self.analysis
        return {
            "corrections": dict(analysis.corrections) if analysis else {},
            "expansions": list(analysis.expansions) if analysis else [],
            "matched_terms": list(top.matched_terms) if top else [],
            "similar_question": top.example if top else None,
            "similar_question_score": round(top.example_similarity, 3) if top else 0.0,
            # what the classifiers fitted on the example questions added to its score (bot.classifiers)
            "classifier_score": round(top.classifier_score, 3) if top else 0.0,
        }

    @property
    def urgent(self) -> bool:
        return self.escalation is not None

    @property
    def answered(self) -> bool:
        return bool(self.hits)

    def blocks(self) -> list[Block]:
        """The reply in reading order: escalation first, always whole, then the preamble."""
        blocks = []
        if self.escalation:
            blocks.append(Block("escalation", self.escalation))
        blocks.append(Block("preamble", self.preamble))
        blocks.extend(Block("notice", notice) for notice in self.notices)
        if self.intro:
            blocks.append(Block("intro", self.intro))
        for hit in self.hits:
            blocks.append(Block("heading", self.passage_heading.format(section=hit.passage.section)))
            blocks.append(Block("passage", hit.passage.text))
        if self.choices:
            lines = [self.choices_intro] + [f"{n}. {hit.passage.section}" for n, hit in enumerate(self.choices, 1)]
            blocks.append(Block("choices", "\n".join(lines)))
        if self.decline:
            blocks.append(Block("decline", self.decline))
        return blocks

    def text(self) -> str:
        """Plain text, as the console and `ask` show it."""
        parts: list[str] = []
        for block in self.blocks():
            if block.kind == "passage" and parts and parts[-1].startswith("From "):
                parts[-1] = f"{parts[-1]}\n{block.text}"
            else:
                parts.append(block.text)
        return "\n\n".join(parts)


@dataclass
class Conversation:
    """What one chat has talked about so far (used for follow-up questions, "more" and /why).

    Bounded (the last `max_turns` questions) and expiring: after `idle_timeout` seconds without a
    message it forgets everything. `clock` is injectable for tests.
    """

    last_hits: tuple[Hit, ...] = ()
    shown: int = 0
    last_question: str = ""
    history: list[str] = field(default_factory=list)
    topic: str = ""  # words of the last answered question, added to follow-ups ("can it be cured?")
    topic_section: str = ""
    last_reply: Reply | None = None
    max_turns: int = MAX_TURNS
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    clock: Callable[[], float] = time.monotonic
    last_active: float | None = None

    def touch(self) -> None:
        """Called on every message: forget everything after the idle timeout."""
        now = self.clock()
        if self.last_active is not None and now - self.last_active > self.idle_timeout:
            self.forget()
        self.last_active = now

    def forget(self) -> None:
        self.last_hits, self.shown, self.last_question = (), 0, ""
        self.history.clear()
        self.topic, self.topic_section, self.last_reply = "", "", None

    def remember(self, question: str, reply: Reply) -> None:
        self.history.append(question)
        del self.history[: -self.max_turns]
        self.last_reply = reply
        if reply.hits:
            self.last_hits = reply.candidates or reply.hits
            self.shown = len(reply.hits)
            self.last_question = question


class FeedbackSink(Protocol):
    """Where operator feedback goes (see bot/feedback.py); holds no user ids."""

    def record(self, kind: str, question: str, passage_ids: list[str]) -> None: ...


class Chatbot:
    def __init__(
        self,
        passages: list[Passage],
        *,
        emergency_number: str = DEFAULT_EMERGENCY_NUMBER,
        lexicon: Lexicon | None = None,
        messages: Messages | None = None,
        retriever: Retriever | None = None,
        max_message_chars: int = MAX_MESSAGE_CHARS,
        answer_threshold: float = ANSWER_THRESHOLD,
        feedback: FeedbackSink | None = None,
        ambiguity_margin: float = AMBIGUITY_MARGIN,
        abstention: AbstentionModels | None = None,
        answer_kinds: tuple[AnswerKind, ...] | None = None,
    ) -> None:
        self.passages = passages
        self.emergency_number = emergency_number
        self.lexicon = lexicon or default_lexicon()
        self.messages = messages or Messages.load()
        self.retriever = retriever or Retriever(passages)
        self.max_message_chars = max_message_chars
        self.answer_threshold = answer_threshold
        self.feedback = feedback
        self.ambiguity_margin = ambiguity_margin
        self.abstention = abstention or load_abstention_models()
        self.answer_kinds = load_answer_kinds() if answer_kinds is None else answer_kinds

    @classmethod
    def from_corpus(cls, corpus_dir: Path | str = DEFAULT_CORPUS_DIR, *, use_cache: bool = True, **options) -> Chatbot:
        """A chatbot over a corpus folder, its index loaded from the cache when the corpus is unchanged."""
        if not use_cache:
            return cls(load_passages(corpus_dir), **options)
        from bot.index_cache import load_or_build_index

        state = load_or_build_index(corpus_dir)
        return cls(state.passages, retriever=Retriever(state=state), **options)

    def help_text(self) -> str:
        return self.messages["help"].format(number=self.emergency_number)

    @cached_property
    def sections(self) -> tuple[str, ...]:
        """Section titles in corpus order, each once (computed once: large corpora have many)."""
        return tuple(dict.fromkeys(p.section for p in self.passages))

    @cached_property
    def _section_passages(self) -> dict[str, tuple[Passage, ...]]:
        """Section title → its passages in corpus order; then merged passages that also carry the title."""
        by_section: dict[str, list[Passage]] = {}
        for passage in self.passages:
            by_section.setdefault(passage.section, []).append(passage)
        for passage in self.passages:
            for title in passage.also_in:
                if passage not in by_section.setdefault(title, []):
                    by_section[title].append(passage)
        return {title: tuple(found) for title, found in by_section.items()}

    @cached_property
    def _topic_list(self) -> list[str]:
        return section_suggestions(self.passages, limit=12)

    def topics(self, limit: int = 6) -> list[str]:
        return self._topic_list[:limit]

    def escalation_text(self, flags: list[RedFlag]) -> str:
        return self.messages["escalation"].format(
            flags=_join_labels([flag.label for flag in flags]), number=self.emergency_number
        )

    def _reply_base(self, flags: list[RedFlag]) -> dict[str, object]:
        """What every reply carries: the preamble, and the escalation when red flags were found."""
        return {
            "preamble": self.messages["preamble"],
            "escalation": self.escalation_text(flags) if flags else None,
            "red_flags": tuple(flags),
            "passage_heading": self.messages["passage_heading"],
        }

    def reply(self, text: str, conversation: Conversation | None = None) -> Reply:
        """Answer one message: red flags first, whatever retrieval finds."""
        message = clean_user_text(text[:SAFETY_SCAN_CHARS] if text else "")
        flags = detect_red_flags(message, self.lexicon)
        base = self._reply_base(flags)
        if not message:
            return Reply(question="", notices=(self.messages["empty"],), **base)
        notices = []
        if len(message) > self.max_message_chars:
            message = message[: self.max_message_chars]
            notices.append(self.messages["truncated"].format(limit=self.max_message_chars))
        if conversation is not None:
            conversation.touch()
        borrowed = self.searched_with_topic(message, conversation)
        result = self.search(message, conversation)
        if result.query.corrections:
            shown_corrections = list(result.query.corrections.items())[:MAX_CORRECTIONS_SHOWN]
            pairs = ", ".join(f"“{typo[:40]}” as “{fixed}”" for typo, fixed in shown_corrections)
            notices.append(self.messages["corrections"].format(pairs=pairs))
        # A follow-up was searched with its topic's words; what it asks for is in its own words.
        own_words = self.retriever.analyse(message).words if borrowed else None
        missing = self.missing_kinds(result, own_words)  # read once, for the model and the exact rule
        confident = self.confident(result, own_words, missing)
        # "How many months does recovery from GBS take?" matches the GBS passage well, but it has no figure.
        lacking = first_exact(missing) if confident else None
        if not confident or lacking:
            if flags:
                decline, lacking = self.messages["urgent_no_answer"], None  # the emergency comes alone
            elif lacking:
                decline = self.messages["decline_detail"].format(section=result.hits[0].passage.section, lacks=lacking.exact)
            else:
                decline = self.messages["decline"].format(topics="; ".join(self.topics()))
            if not flags and self.feedback is not None:
                self.feedback.record("declined", message, [])
            reply = Reply(
                question=message, notices=tuple(notices), decline=decline,
                analysis=result.query, candidates=result.hits,
                suggestions=(result.hits[0].passage.section,) if lacking else (),
                lacking=lacking.name if lacking else None, **base,
            )
        elif self.ambiguous(result.hits):
            choices = result.hits[:2]
            reply = Reply(
                question=message, notices=tuple(notices), analysis=result.query, candidates=result.hits,
                choices=choices, suggestions=tuple(h.passage.section for h in choices),
                choices_intro=self.messages.texts.get("choices", Reply.choices_intro), **base,
            )
        else:
            shown = result.hits[:1]
            reply = Reply(
                question=message,
                notices=tuple(notices),
                intro=self.messages["answer_intro"],
                hits=shown,
                suggestions=self.related_sections(shown[0].passage.section, result.hits),
                analysis=result.query,
                candidates=result.hits,
                **base,
            )
            if conversation is not None and not borrowed:
                conversation.topic = " ".join(w for w in result.query.words if w not in STOP_WORDS)
                conversation.topic_section = shown[0].passage.section
        if conversation is not None:
            conversation.remember(message, reply)
        return reply

    def section_reply(self, title: str, conversation: Conversation | None = None) -> Reply:
        """A chosen related topic or choice (a section title): answered from that section's first
        passage, its other passages next for "more". Front ends use this for numbered/button choices;
        a title that is not a section (an old button after the corpus changed) is asked as a question."""
        section = self._section_passages.get(title)
        if not section:
            return self.reply(title, conversation)
        if conversation is not None:
            conversation.touch()
            offered = self.offered_passage(title, conversation)
            if offered is not None:
                section = [offered] + [p for p in section if p != offered]
        flags = detect_red_flags(title, self.lexicon)  # the same check as for a typed message
        result = self.retriever.search(title, limit=3)  # for related sections and /why
        scored = {hit.passage.id: hit for hit in result.hits}
        candidates = tuple(scored.get(p.id) or Hit(p, 0.0, ()) for p in section)
        candidates += tuple(hit for hit in result.hits if hit.passage not in section)
        reply = Reply(
            question=title,
            **self._reply_base(flags),
            intro=self.messages["answer_intro"],
            hits=candidates[:1],
            suggestions=self.related_sections(title, result.hits),
            analysis=result.query,
            candidates=candidates,
        )
        if conversation is not None:
            conversation.topic = " ".join(w for w in result.query.words if w not in STOP_WORDS)
            conversation.topic_section = title
            conversation.remember(title, reply)
        return reply

    @staticmethod
    def offered_passage(title: str, conversation: Conversation) -> Passage | None:
        """The passage of section `title` that the last reply declined for lacking an exact answer
        ("which brand of ice pack for tennis elbow": the tennis elbow passage of "Hand injury"), which
        the offered topic then opens at; None otherwise."""
        last = conversation.last_reply
        if last is None or not last.lacking or not last.candidates:
            return None
        passage = last.candidates[0].passage
        return passage if passage.section == title else None

    def search(self, message: str, conversation: Conversation | None = None) -> SearchResult:
        """Retrieve for a message; a follow-up ("can it be cured?") borrows the previous topic's words."""
        if not self.searched_with_topic(message, conversation):
            return self.retriever.search(message, limit=3)
        return self.retriever.search(f"{message} {conversation.topic}", limit=3)

    def searched_with_topic(self, message: str, conversation: Conversation | None) -> bool:
        """The message is a follow-up and `search` adds the conversation's topic to it."""
        return conversation is not None and self.is_follow_up(message, conversation)

    @staticmethod
    def is_follow_up(message: str, conversation: Conversation) -> bool:
        return bool(conversation.topic) and bool(FOLLOW_UP_WORDS & set(words(message)))

    def ambiguous(self, hits: tuple[Hit, ...]) -> bool:
        """The two best passages are nearly tied and about different sections: do not guess."""
        return (
            len(hits) >= 2
            and hits[0].passage.section != hits[1].passage.section
            and hits[0].score - hits[1].score < self.ambiguity_margin
        )

    def confident(
        self, result: SearchResult, question_words: tuple[str, ...] | None = None,
        missing: tuple[AnswerKind, ...] | None = None,
    ) -> bool:
        """Answer only a question the fitted model judges to be about the corpus, with a good enough match.
        `missing`: the kinds of answer the best passage lacks, when already read (`missing_kinds`)."""
        if not self.passes_hard_rules(result):
            return False
        # Past the hard rules, the fitted model decides: "weak wifi signal" has an anchor word but matches
        # little of any passage; "hard to get out of a chair" has none but is close to known questions.
        features = self.match_features(result, question_words, missing)
        return self.abstention.for_retriever(self.retriever).answers(features)

    def match_features(
        self, result: SearchResult, question_words: tuple[str, ...] | None = None,
        missing: tuple[AnswerKind, ...] | None = None,
    ) -> dict[str, float]:
        """What the answer-or-decline model reads about a search result with at least one hit."""
        return match_features(result, self.retriever, self.answer_kinds, question_words, missing)

    def missing_kinds(self, result: SearchResult, question_words: tuple[str, ...] | None = None) -> tuple[AnswerKind, ...]:
        """The kinds of answer the question asks for that the best passage cannot give (none without a hit)."""
        return missing_from_best_passage(self.answer_kinds, result, self.retriever, question_words) if result.hits else ()

    def lacking_exact_answer(self, result: SearchResult, question_words: tuple[str, ...] | None = None) -> AnswerKind | None:
        """An exact kind of answer (a figure, a date, a name) the question asks for and the best passage
        cannot give: then the bot declines however well the passage matches (bot.answer_kinds)."""
        return first_exact(self.missing_kinds(result, question_words))

    def passes_hard_rules(self, result: SearchResult) -> bool:
        """A passage was found and its score reaches the floor."""
        return bool(result.hits) and result.best_score >= self.answer_threshold

    def related_sections(self, section: str, hits: tuple[Hit, ...], limit: int = 3) -> tuple[str, ...]:
        """Other sections worth offering after an answer: the runners-up first."""
        titles = [hit.passage.section for hit in hits] + list(self.sections[: limit + len(hits) + 1])
        return tuple([t for t in dict.fromkeys(titles) if t != section][:limit])

    def more(self, conversation: Conversation) -> Reply:
        """The next-best passage for the last question, or a polite note that there is none."""
        base = self._reply_base([])
        conversation.touch()  # after the idle timeout there is no earlier question any more
        remaining = conversation.last_hits[conversation.shown :]
        if not remaining:
            note = self.messages["no_more"] if conversation.history else self.messages["no_question"]
            return Reply(question=conversation.last_question, notices=(note,), **base)
        conversation.shown += 1
        return Reply(
            question=conversation.last_question,
            intro=self.messages["answer_intro"],
            hits=remaining[:1],
            candidates=conversation.last_hits,
            **base,
        )

    def record_feedback(self, rating: str, question: str, passage_ids: list[str]) -> bool:
        """Store a 👍/👎 rating when the operator opted in; returns whether it was stored."""
        if self.feedback is None:
            return False
        self.feedback.record(rating, question, passage_ids)
        return True


def _join_labels(labels: list[str]) -> str:
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]
