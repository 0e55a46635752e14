"""Telegram front end: formats core replies as HTML and sends them through python-telegram-bot.

What it does, in the order a message meets it:

1. `ChatOrderedUpdateProcessor` runs chats concurrently, each chat's updates in order.
2. The gate (handler group -1) drops what is not for the bot (group messages that neither mention
   it, reply to it, nor are a command for it) and applies per-user flood protection.
3. Commands (/start /help /sources /emergency), text questions (new or edited), button presses,
   and a one-line answer for photos, stickers, voice and other non-text messages.
4. Replies are HTML with every piece of corpus and user text escaped, split between paragraphs
   below 4096 characters; the escalation always leads the first message, whole.
5. Sends go through `FloodControlLimiter` (Telegram's ~30 messages/s, retries after 429).

Edited messages are answered again with a *new* reply that quotes the edited message, rather
than by editing the old answer: if the edit adds a red-flag symptom, the escalation must arrive as
a new, notified message at the bottom of the chat, not change silently somewhere above.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import secrets
import signal
import time
import traceback
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType, MessageLimit, ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    BaseRateLimiter,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.chat import Block, Chatbot, Conversation, Reply
from bot.config import ConfigError, Settings, check_webhook_url
from bot.frontends import logprivacy
from bot.frontends.throttle import ChatOrderedUpdateProcessor, FloodControlLimiter, FloodGuard, Verdict

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = MessageLimit.MAX_TEXT_LENGTH  # 4096, in UTF-16 code units
RATE_LIMIT_RETRIES = 10
CONVERSATION_IDLE_SECONDS = 30 * 60
HISTORY_LIMIT = 20
REMEMBERED_REPLIES = 10  # replies whose buttons still work
FLOOD_LIMIT, FLOOD_WINDOW = 30, 10.0
STARTUP_ATTEMPTS, STARTUP_FIRST_DELAY, STARTUP_MAX_DELAY = 6, 1.0, 30.0
ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]
BUTTON_LABEL_CHARS = 40
WEBHOOK_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")

COMMANDS = [
    BotCommand("start", "What this bot does"),
    BotCommand("help", "How to ask, with examples"),
    BotCommand("sources", "Which reference text the answers come from"),
    BotCommand("emergency", "What to do in an emergency"),
]
GREETING = "👋 Hello! I answer questions about muscle weakness."
EXAMPLES = (
    "What can cause weakness in the legs?",
    "What is myasthenia gravis?",
    "How is muscle weakness treated?",
)
# /sources lists at most this many files and sections, each cut to this many characters.
SOURCES_LISTED, SOURCES_LINE_CHARS = 40, 80
NON_TEXT = "I can only read text messages. Please type your question about muscle weakness."
UNKNOWN_COMMAND = "I don't know that command. Type /help to see what I can do."
SLOW_DOWN = "You are sending messages very quickly. Please wait a few seconds, then ask again."
APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment. In an emergency, call {number} now."
EXPIRED_BUTTON = "This button has expired. Please ask your question again."
OLD_MORE_BUTTON = "That button belongs to an earlier answer. Ask the question again to see more."
THANKS = "Thank you for your feedback!"
ALREADY_RATED = "You have already rated this answer."


# ---------------------------------------------------------------------------------------------
# Formatting


def utf16_length(text: str) -> int:
    """Telegram counts message length in UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def escape(text: str) -> str:
    return html.escape(text, quote=False)


_WRAP = {"escalation": ("<b>", "</b>"), "heading": ("<b>", "</b>"), "preamble": ("<i>", "</i>"),
         "notice": ("<i>", "</i>")}


def block_to_html(block: Block) -> str:
    """One reply paragraph as Telegram HTML; every piece of corpus and user text is escaped."""
    opening, closing = _WRAP.get(block.kind, ("", ""))
    return f"{opening}{escape(block.text)}{closing}"


def block_to_html_pieces(block: Block, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """The block as one HTML paragraph, or as several when it alone exceeds `limit`.

    The HTML source is measured, which is never shorter than what Telegram counts (tags vanish,
    `&amp;` becomes one character), so every piece is accepted. Pieces end at line breaks, else
    between words, else (one enormous word) anywhere -- never inside a tag or an entity.
    """
    whole = block_to_html(block)
    if utf16_length(whole) <= limit:
        return [whole]
    opening, closing = _WRAP.get(block.kind, ("", ""))
    budget = limit - utf16_length(opening) - utf16_length(closing)
    pieces: list[str] = []
    current = ""
    for token in re.findall(r"\S+\s*|\s+", block.text):
        escaped = escape(token)
        if utf16_length(current) + utf16_length(escaped) <= budget:
            current += escaped
            continue
        if current.strip():
            pieces.append(current)
        current = ""
        while utf16_length(escaped) > budget:  # one word longer than a message
            cut, size = 0, 0
            for char in token:
                width = utf16_length(escape(char))
                if size + width > budget:
                    break
                size += width
                cut += 1
            pieces.append(escape(token[:cut]))
            token = token[cut:]
            escaped = escape(token)
        current = escaped
    if current.strip():
        pieces.append(current)
    return [f"{opening}{piece.strip()}{closing}" for piece in pieces if piece.strip()]


def pack_paragraphs(paragraphs: list[str], limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Join paragraphs with blank lines into as few messages as fit; each paragraph must fit alone."""
    messages: list[str] = []
    current = ""
    for paragraph in paragraphs:
        if not paragraph.strip():
            continue
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if utf16_length(candidate) <= limit:
            current = candidate
        else:
            if current:
                messages.append(current)
            current = paragraph
    if current:
        messages.append(current)
    return messages


def blocks_to_html_messages(blocks: list[Block], limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Blocks as HTML messages of at most `limit` characters, split between paragraphs.

    A heading stays with the passage it introduces when both fit in one message.
    """
    paragraphs: list[str] = []
    for block in blocks:
        pieces = block_to_html_pieces(block, limit)
        if (
            block.kind == "passage" and paragraphs and paragraphs[-1].startswith("<b>From ")
            and utf16_length(f"{paragraphs[-1]}\n{pieces[0]}") <= limit
        ):
            paragraphs[-1] = f"{paragraphs[-1]}\n{pieces.pop(0)}"
        paragraphs.extend(pieces)
    return pack_paragraphs(paragraphs, limit)


def reply_to_html_messages(reply: Reply, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """The reply as one or more HTML messages; the escalation, if any, leads the first one, whole."""
    return blocks_to_html_messages(reply.blocks(), limit)


def emergency_text(chatbot: Chatbot) -> str:
    """The /emergency text: the escalation's own instructions, for the red flags the bot knows."""
    custom = chatbot.messages.texts.get("emergency")
    if custom:
        return custom.format(number=chatbot.emergency_number)
    labels = list(chatbot.lexicon.labels().values())
    signs = "; ".join(labels)
    instructions = chatbot.messages["escalation"].split("\n", 1)[-1]
    first = f"🚨 URGENT: these can be signs of a medical emergency: {signs}."
    return f"{first}\n" + instructions.format(flags=signs, number=chatbot.emergency_number)


def button_label(text: str, limit: int = BUTTON_LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------------------------------------
# Per-chat state (kept in chat_data)


@dataclass
class ReplyRecord:
    """What the buttons under one reply refer to."""

    question: str
    passage_ids: list[str]
    suggestions: tuple[str, ...]
    can_more: bool
    rated: bool = False


@dataclass
class ChatState:
    """Everything the bot keeps about a chat; bounded, and reset after 30 minutes idle."""

    conversation: Conversation = field(default_factory=Conversation)
    last_seen: float = 0.0
    # Button serials start at a random number, so buttons of a chat state that was dropped (restart,
    # idle reset) cannot hit a reply of the new one: they get "expired" instead.
    serial: int = field(default_factory=lambda: secrets.randbelow(10**9))
    replies: dict[int, ReplyRecord] = field(default_factory=dict)
    latest_answer: int = 0  # serial of the reply that "More" continues


def _listing(lines: list[str], what: str, limit: int = SOURCES_LISTED) -> str:
    """At most `limit` lines (a large corpus has thousands), then how many more there are."""
    shown = "\n".join(lines[:limit])
    return shown + (f"\n… and {len(lines) - limit} more {what}" if len(lines) > limit else "")


def chat_state(chat_data: dict | None, now: float | None = None) -> ChatState:
    """The chat's state, fresh if it was idle longer than CONVERSATION_IDLE_SECONDS.

    The Conversation itself is stored under chat_data["conversation"] as well, for other code.
    """
    now = time.monotonic() if now is None else now
    if chat_data is None:
        return ChatState(last_seen=now)
    state = chat_data.get("state")
    if not isinstance(state, ChatState) or now - state.last_seen > CONVERSATION_IDLE_SECONDS:
        state = ChatState()
        chat_data["state"] = state
    state.last_seen = now
    chat_data["conversation"] = state.conversation
    del state.conversation.history[:-HISTORY_LIMIT]
    return state


# ---------------------------------------------------------------------------------------------
# Handlers


def describe_error(error: BaseException, with_message: bool = False) -> str:
    """The exception's type and traceback; its message only when allowed (it may hold user text)."""
    stack = "".join(traceback.format_tb(error.__traceback__))
    headline = f"{type(error).__name__}: {error}" if with_message else type(error).__name__
    return f"{headline}\n{stack}".rstrip()


class TelegramFrontend:
    """Handlers that connect Telegram updates to the core."""

    def __init__(self, chatbot: Chatbot, settings: Settings | None = None, flood: FloodGuard | None = None) -> None:
        self.chatbot = chatbot
        self.settings = settings or Settings()
        self.flood = flood or FloodGuard(FLOOD_LIMIT, FLOOD_WINDOW)
        self._updates_seen = 0

    # -- gate --------------------------------------------------------------------------------
    @staticmethod
    def is_addressed(message: Message, bot_username: str, bot_id: int) -> bool:
        """In groups: a command for this bot, a mention of it, or a reply to one of its messages."""
        if message.chat.type == ChatType.PRIVATE:
            return True
        reply_to = message.reply_to_message
        if reply_to is not None and reply_to.from_user is not None and reply_to.from_user.id == bot_id:
            return True
        text = message.text or message.caption or ""
        entities = message.entities or message.caption_entities or ()
        name = bot_username.lower()
        for entity in entities:
            value = message.parse_entity(entity) if message.text else message.parse_caption_entity(entity)
            if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
                _, _, target = value.partition("@")
                if not target or target.lower() == name:
                    return True
            elif entity.type == MessageEntity.MENTION and value.lower() == f"@{name}":
                return True
            elif entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_id:
                return True
        return bool(name) and f"@{name}" in text.lower() and not entities

    async def gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Handler group -1: stop updates that are not for the bot, or over the flood limit."""
        self._updates_seen += 1
        if self._updates_seen % 500 == 0:
            self.forget_idle_chats(context.application)
        query = update.callback_query
        message = update.message or update.edited_message
        if query is None and message is None:
            raise ApplicationHandlerStop
        if message is not None and not self.is_addressed(message, context.bot.username or "", context.bot.id):
            raise ApplicationHandlerStop
        user = update.effective_user
        key = user.id if user is not None else (update.effective_chat.id if update.effective_chat else 0)
        verdict = self.flood.check(key)
        if verdict is Verdict.ALLOW:
            return
        logger.info("flood protection: %s a message", "warned about" if verdict is Verdict.WARN else "ignored")
        if query is not None:
            await self._answer_query(query, SLOW_DOWN if verdict is Verdict.WARN else None)
        elif verdict is Verdict.WARN and update.effective_chat is not None:
            await self.send_html(update, context, [escape(SLOW_DOWN)])
        raise ApplicationHandlerStop

    @staticmethod
    def forget_idle_chats(application: Application) -> None:
        now = time.monotonic()
        for chat_id, data in list(application.chat_data.items()):
            state = data.get("state") if isinstance(data, dict) else None
            if state is None or now - state.last_seen > CONVERSATION_IDLE_SECONDS:
                application.drop_chat_data(chat_id)

    # -- sending -----------------------------------------------------------------------------
    @staticmethod
    def _reply_parameters(update: Update) -> ReplyParameters | None:
        """Quote the user's message in groups (whom are we answering?) and for edited messages."""
        message = update.message or update.edited_message
        if message is None:
            return None
        if update.edited_message is not None or message.chat.type != ChatType.PRIVATE:
            return ReplyParameters(message.message_id, allow_sending_without_reply=True)
        return None

    async def send_html(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, messages: list[str],
        keyboard: InlineKeyboardMarkup | None = None,
    ) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        reply_parameters = self._reply_parameters(update)
        message = update.effective_message
        # In a forum group, answer in the topic the message or button came from.
        thread = message.message_thread_id if message is not None and message.is_topic_message else None
        for index, text in enumerate(messages):
            last = index == len(messages) - 1
            await context.bot.send_message(
                chat.id, text, parse_mode=ParseMode.HTML,
                reply_markup=keyboard if last else None,
                reply_parameters=reply_parameters if index == 0 else None,
                message_thread_id=thread,
            )

    async def send_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE, reply: Reply) -> None:
        """Send a core reply, with topic, "More" and rating buttons under answers (topic buttons only
        under "which one do you mean?" and under a decline that offers the topic it does cover)."""
        keyboard = None
        if reply.answered or reply.choices or reply.suggestions:
            state = chat_state(context.chat_data)
            conversation = state.conversation
            state.serial += 1
            serial = state.serial
            record = ReplyRecord(
                question=reply.question,
                passage_ids=[hit.passage.id for hit in reply.hits],
                suggestions=reply.suggestions[:3],
                can_more=reply.answered and conversation.shown < len(conversation.last_hits),
                rated=not reply.answered,  # nothing to rate without an answer
            )
            state.replies[serial] = record
            if reply.answered:
                state.latest_answer = serial
            for old in sorted(state.replies)[:-REMEMBERED_REPLIES]:
                del state.replies[old]
            keyboard = self.keyboard(serial, record, rated=record.rated)
        await self.send_html(update, context, reply_to_html_messages(reply), keyboard)

    @staticmethod
    def keyboard(serial: int, record: ReplyRecord, rated: bool = False) -> InlineKeyboardMarkup:
        """Buttons; callback_data is a letter and the reply's serial, far below Telegram's 64 bytes."""
        rows = [
            [InlineKeyboardButton(f"📖 {button_label(title)}", callback_data=f"t{serial}.{index}")]
            for index, title in enumerate(record.suggestions)
        ]
        last_row = []
        if record.can_more:
            last_row.append(InlineKeyboardButton("More ➕", callback_data=f"m{serial}"))
        if not rated:
            last_row += [
                InlineKeyboardButton("👍", callback_data=f"u{serial}"),
                InlineKeyboardButton("👎", callback_data=f"d{serial}"),
            ]
        if last_row:
            rows.append(last_row)
        return InlineKeyboardMarkup(rows)

    # -- commands ----------------------------------------------------------------------------
    def start_text(self) -> list[str]:
        return [
            f"<b>{escape(GREETING)}</b>",
            f"<i>{escape(self.chatbot.messages['preamble'])}</i>",
            escape(self.chatbot.help_text()),
            escape("Commands: /help, /sources, /emergency."),
        ]

    def help_paragraphs(self) -> list[str]:
        examples = "\n".join(f"• {example}" for example in EXAMPLES)
        return [
            escape(self.chatbot.help_text()),
            f"<b>For example:</b>\n{escape(examples)}",
            escape("Under an answer, tap a topic to read about it, “More” for the next passage, "
                   "or 👍/👎 to rate it.\n/sources: where the answers come from\n"
                   "/emergency: what to do in an emergency"),
        ]

    def sources_paragraphs(self) -> list[str]:
        passages = self.chatbot.passages
        files = list(dict.fromkeys(p.source for p in passages))
        sections = list(dict.fromkeys(p.section for p in passages))
        return [
            escape("I answer only from this vetted reference text, quoting it word for word:"),
            _listing([f"📄 <b>{escape(name[:SOURCES_LINE_CHARS])}</b>" for name in files], "files"),
            f"<b>Its sections ({len(sections)}):</b>\n"
            + _listing([f"• {escape(title[:SOURCES_LINE_CHARS])}" for title in sections], "sections"),
            f"<i>{escape(self.chatbot.messages['preamble'])}</i>",
        ]

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_html(update, context, pack_paragraphs(self.start_text()))

    async def on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_html(update, context, pack_paragraphs(self.help_paragraphs()))

    async def on_sources(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_html(update, context, pack_paragraphs(self.sources_paragraphs()))

    async def on_emergency(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_html(update, context, blocks_to_html_messages([Block("escalation", emergency_text(self.chatbot))]))

    async def on_unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is not None and message.chat.type != ChatType.PRIVATE:
            command = message.text.split(maxsplit=1)[0] if message.text else ""
            if "@" not in command:  # "/foo" in a group may be another bot's command: stay quiet
                return
        await self.send_html(update, context, [escape(UNKNOWN_COMMAND)])

    async def on_non_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_html(update, context, [escape(NON_TEXT)])

    # -- questions ---------------------------------------------------------------------------
    def question_text(self, message: Message, bot_username: str) -> str:
        """The message text (or a photo's or file's caption) without mentions of the bot."""
        text = message.text or message.caption or ""
        if bot_username:
            text = re.sub(rf"(?<!\w)@{re.escape(bot_username)}\b", " ", text, flags=re.IGNORECASE)
        return text

    async def answer(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, text: str, *, section: bool = False
    ) -> None:
        """Reply to a message, or (section=True) to a chosen topic button: that section's answer."""
        chat = update.effective_chat
        if chat is None:
            return
        await context.bot.send_chat_action(chat.id, ChatAction.TYPING)
        state = chat_state(context.chat_data)
        if self.settings.log_user_text:
            logger.debug("question in chat %s: %r", chat.id, text)
        respond = self.chatbot.section_reply if section else self.chatbot.reply
        reply = respond(text, state.conversation)
        logger.info("answered a message (urgent=%s, answered=%s)", reply.urgent, reply.answered)
        await self.send_reply(update, context, reply)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        await self.answer(update, context, self.question_text(message, context.bot.username or ""))

    # -- buttons -----------------------------------------------------------------------------
    @staticmethod
    async def _answer_query(query, text: str | None = None) -> None:
        try:
            await query.answer(text)
        except BadRequest as error:  # too old, or already answered
            logger.info("could not answer a button press: %s", type(error).__name__)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        match = re.fullmatch(r"([tmud])(\d+)(?:\.(\d))?", query.data or "")
        state = chat_state(context.chat_data)
        record = state.replies.get(int(match.group(2))) if match else None
        if match is None or record is None:
            await self._answer_query(query, EXPIRED_BUTTON)
            return
        kind, serial = match.group(1), int(match.group(2))
        if kind == "t":
            index = int(match.group(3) or 0)
            if index >= len(record.suggestions):
                await self._answer_query(query, EXPIRED_BUTTON)
                return
            await self._answer_query(query)
            await self.answer(update, context, record.suggestions[index], section=True)
        elif kind == "m":
            if serial != state.latest_answer:
                await self._answer_query(query, OLD_MORE_BUTTON)
                return
            await self._answer_query(query)
            if update.effective_chat is not None:
                await context.bot.send_chat_action(update.effective_chat.id, ChatAction.TYPING)
            await self.send_reply(update, context, self.chatbot.more(state.conversation))
        else:
            if record.rated:
                await self._answer_query(query, ALREADY_RATED)
                return
            record.rated = True
            stored = self.chatbot.record_feedback("up" if kind == "u" else "down", record.question, record.passage_ids)
            logger.info("feedback %s (%s)", "stored" if stored else "acknowledged", "up" if kind == "u" else "down")
            await self._answer_query(query, THANKS)
            if query.message is not None:
                try:
                    await query.edit_message_reply_markup(self.keyboard(serial, record, rated=True))
                except BadRequest as error:
                    logger.info("could not update the buttons: %s", type(error).__name__)

    # -- errors ------------------------------------------------------------------------------
    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if error is None:
            return
        if update is None and isinstance(error, (NetworkError, TimedOut)):
            logger.warning("the Bot API is unreachable (%s); retrying", type(error).__name__)
            return
        logger.error("error while handling an update: %s", describe_error(error, self.settings.log_user_text))
        if not isinstance(update, Update) or update.effective_chat is None or isinstance(error, Forbidden):
            return
        text = APOLOGY.format(number=self.chatbot.emergency_number)
        try:
            if update.callback_query is not None:
                await self._answer_query(update.callback_query)
            await context.bot.send_message(update.effective_chat.id, escape(text), parse_mode=ParseMode.HTML)
        except TelegramError as second:
            logger.error("could not send the apology: %s", type(second).__name__)


# ---------------------------------------------------------------------------------------------
# Application


async def register_commands(application: Application) -> None:
    await application.bot.set_my_commands(COMMANDS)


def build_application(
    chatbot: Chatbot,
    settings: Settings,
    *,
    rate_limiter: BaseRateLimiter | None = None,
    flood: FloodGuard | None = None,
) -> Application:
    frontend = TelegramFrontend(chatbot, settings, flood)
    builder = (
        ApplicationBuilder()
        .token(settings.require_token())
        .rate_limiter(rate_limiter or FloodControlLimiter(max_retries=RATE_LIMIT_RETRIES))
        .post_init(register_commands)
        .concurrent_updates(ChatOrderedUpdateProcessor())
    )
    if settings.api_base_url:
        builder = builder.base_url(settings.api_base_url)
    application = builder.build()
    application.bot_data["frontend"] = frontend
    messages = filters.UpdateType.MESSAGES  # new and edited messages alike
    application.add_handler(TypeHandler(Update, frontend.gate), group=-1)
    for name, callback in (
        ("start", frontend.on_start), ("help", frontend.on_help),
        ("sources", frontend.on_sources), ("emergency", frontend.on_emergency),
    ):
        application.add_handler(CommandHandler(name, callback, filters=messages))
    application.add_handler(MessageHandler(filters.COMMAND & messages, frontend.on_unknown_command))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND & messages, frontend.on_text))
    # A photo or file with a caption: the caption is read like a text message (red flags first).
    application.add_handler(MessageHandler(filters.CAPTION & messages, frontend.on_text))
    non_text = (
        filters.PHOTO | filters.Sticker.ALL | filters.VOICE | filters.AUDIO | filters.VIDEO
        | filters.VIDEO_NOTE | filters.Document.ALL | filters.LOCATION | filters.VENUE | filters.CONTACT
        | filters.ANIMATION | filters.POLL | filters.Dice.ALL
    )
    application.add_handler(MessageHandler(non_text & messages, frontend.on_non_text))
    application.add_handler(CallbackQueryHandler(frontend.on_button))
    application.add_error_handler(frontend.on_error)
    return application


class BotAPIUnreachable(Exception):
    """The Bot API could not be reached at start, or refused the token; ends with exit code 2."""


class WebhookListenError(Exception):
    """The webhook server could not listen on the configured address and port; ends with exit code 2."""


def _api_host(settings: Settings) -> str:
    return urlsplit(settings.api_base_url).netloc if settings.api_base_url else "api.telegram.org"


async def wait_for_bot_api(
    settings: Settings, attempts: int = STARTUP_ATTEMPTS, first_delay: float = STARTUP_FIRST_DELAY,
    max_delay: float = STARTUP_MAX_DELAY,
) -> None:
    """Call getMe until the Bot API answers, backing off exponentially; then give up with one line."""
    from telegram import Bot

    delay = first_delay
    for attempt in range(1, attempts + 1):
        bot = Bot(settings.require_token(), base_url=settings.api_base_url or "https://api.telegram.org/bot")
        try:
            async with bot:
                return
        except InvalidToken:
            raise BotAPIUnreachable(
                f"the Bot API at {_api_host(settings)} rejected TELEGRAM_BOT_TOKEN (check it with @BotFather)"
            ) from None
        except (NetworkError, TimedOut) as error:
            if attempt == attempts:
                raise BotAPIUnreachable(
                    f"cannot reach the Telegram Bot API at {_api_host(settings)} after {attempts} attempts "
                    f"({type(error).__name__}); check the network or TELEGRAM_API_BASE_URL"
                ) from None
            logger.warning(
                "cannot reach the Bot API at %s (%s); attempt %d of %d, retrying in %.0f s",
                _api_host(settings), type(error).__name__, attempt, attempts, delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


@dataclass(frozen=True)
class WebhookOptions:
    listen: str
    port: int
    url_path: str
    webhook_url: str
    secret_token: str


def webhook_options(
    settings: Settings, webhook_url: str, listen: str | None = None, port: int | None = None,
    source: str = "TELEGRAM_WEBHOOK_URL",
) -> WebhookOptions:
    """`source` names where the URL came from (--webhook or the variable) for error messages."""
    parts = check_webhook_url(webhook_url, source)
    secret = settings.webhook_secret or secrets.token_urlsafe(32)
    if not WEBHOOK_SECRET_RE.fullmatch(secret):
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET may hold only A-Z, a-z, 0-9, _ and - (1 to 256 characters)")
    return WebhookOptions(
        listen=listen or settings.webhook_listen,
        port=port or settings.webhook_port,
        url_path=parts.path.strip("/"),
        webhook_url=webhook_url,
        secret_token=secret,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_telegram(
    chatbot: Chatbot, settings: Settings, webhook_url: str | None = None, *,
    listen: str | None = None, port: int | None = None,
    startup_attempts: int | None = None, startup_delay: float = STARTUP_FIRST_DELAY,
) -> int:
    """Run until SIGINT or SIGTERM (exit code 0). Polling unless a webhook URL is given."""
    source = "--webhook" if webhook_url else "TELEGRAM_WEBHOOK_URL"
    webhook_url = webhook_url or settings.webhook_url
    options = webhook_options(settings, webhook_url, listen, port, source) if webhook_url else None
    logprivacy.install(settings.log_user_text, (settings.telegram_token or "", options.secret_token if options else ""))
    signal.signal(signal.SIGTERM, _interrupt)  # until PTB installs its own handlers
    asyncio.run(wait_for_bot_api(settings, startup_attempts or settings.startup_attempts, startup_delay))
    application = build_application(chatbot, settings)
    asyncio.set_event_loop(asyncio.new_event_loop())
    try:
        if options is None:
            logger.info("starting the Telegram bot (long polling)")
            application.run_polling(allowed_updates=ALLOWED_UPDATES, bootstrap_retries=3)
        else:
            logger.info("starting the Telegram bot (webhook on %s:%d)", options.listen, options.port)
            try:
                application.run_webhook(
                    listen=options.listen, port=options.port, url_path=options.url_path,
                    webhook_url=options.webhook_url, secret_token=options.secret_token,
                    allowed_updates=ALLOWED_UPDATES, bootstrap_retries=3,
                )
            except OSError as error:  # bad address, address not local, port in use (gaierror is an OSError)
                raise WebhookListenError(
                    f"cannot listen on {options.listen}:{options.port}: {error.strerror or error}"
                ) from None
    finally:
        # PTB's handlers are gone with its event loop, and the defaults would kill the process on a
        # second Ctrl-C or SIGTERM: the bot is stopping anyway, so a repeated stop signal changes nothing.
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, signal.SIG_IGN)
    logger.info("the Telegram bot stopped")
    return 0


def ptb_rate_limiter(max_retries: int = 5) -> AIORateLimiter:
    """PTB's own limiter, for comparison in the benchmark."""
    return AIORateLimiter(max_retries=max_retries)
