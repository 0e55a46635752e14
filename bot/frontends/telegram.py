"""Telegram front end: formats core replies as HTML and sends them through python-telegram-bot."""

from __future__ import annotations

import html
import logging

from telegram import BotCommand, Update
from telegram.constants import ChatAction, MessageLimit, ParseMode
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.chat import Block, Chatbot, Conversation, Reply
from bot.config import Settings

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = MessageLimit.MAX_TEXT_LENGTH  # 4096
RATE_LIMIT_RETRIES = 5
COMMANDS = [
    BotCommand("start", "What this bot does"),
    BotCommand("help", "How to ask and what topics are covered"),
]


def block_to_html(block: Block) -> str:
    """One reply paragraph as Telegram HTML; every piece of corpus and user text is escaped."""
    text = html.escape(block.text, quote=False)
    if block.kind in ("escalation", "heading"):
        return f"<b>{text}</b>"
    if block.kind in ("preamble", "notice"):
        return f"<i>{text}</i>"
    return text


def reply_to_html_messages(reply: Reply, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """The reply as one or more HTML messages of at most `limit` characters, split between paragraphs."""
    return pack_paragraphs([block_to_html(block) for block in reply.blocks()], limit)


def pack_paragraphs(paragraphs: list[str], limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    messages: list[str] = []
    current = ""
    for paragraph in paragraphs:
        for piece in _split_oversized(paragraph, limit):
            candidate = f"{current}\n\n{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                messages.append(current)
                current = piece
    if current:
        messages.append(current)
    return messages


def _split_oversized(paragraph: str, limit: int) -> list[str]:
    """A paragraph longer than a message, cut at line or word boundaries (never inside a tag)."""
    if len(paragraph) <= limit:
        return [paragraph]
    plain = html.escape(html.unescape(_strip_tags(paragraph)), quote=False)
    pieces, rest = [], plain
    while len(rest) > limit:
        cut = max(rest.rfind("\n", 0, limit), rest.rfind(" ", 0, limit))
        if cut <= 0:
            cut = limit
        while "&" in rest[max(0, cut - 6) : cut] and ";" not in rest[rest.rfind("&", 0, cut) : cut]:
            cut -= 1  # do not split an entity such as &amp;
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return pieces + ([rest] if rest else [])


def _strip_tags(text: str) -> str:
    import re

    return re.sub(r"</?(?:b|i)>", "", text)


class TelegramFrontend:
    """Handlers that connect Telegram updates to the core."""

    def __init__(self, chatbot: Chatbot) -> None:
        self.chatbot = chatbot

    def conversation(self, context: ContextTypes.DEFAULT_TYPE) -> Conversation:
        chat_data = context.chat_data if context.chat_data is not None else {}
        return chat_data.setdefault("conversation", Conversation())

    async def send_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE, reply: Reply) -> None:
        chat_id = update.effective_chat.id
        for message in reply_to_html_messages(reply):
            await context.bot.send_message(chat_id, message, parse_mode=ParseMode.HTML)

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_help(update, context)

    async def on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_help(update, context)

    async def send_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        text = "\n\n".join(
            [
                f"<i>{html.escape(self.chatbot.messages['preamble'], quote=False)}</i>",
                html.escape(self.chatbot.help_text(), quote=False),
            ]
        )
        await context.bot.send_message(update.effective_chat.id, text, parse_mode=ParseMode.HTML)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or update.effective_chat is None:
            return
        await context.bot.send_chat_action(update.effective_chat.id, ChatAction.TYPING)
        reply = self.chatbot.reply(message.text or "", self.conversation(context))
        logger.info("answered a message (urgent=%s, answered=%s)", reply.urgent, reply.answered)
        await self.send_reply(update, context, reply)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        logger.error("error while handling an update: %s", type(context.error).__name__, exc_info=context.error)


async def register_commands(application: Application) -> None:
    await application.bot.set_my_commands(COMMANDS)


def build_application(chatbot: Chatbot, settings: Settings) -> Application:
    frontend = TelegramFrontend(chatbot)
    builder = (
        ApplicationBuilder()
        .token(settings.require_token())
        .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
        .post_init(register_commands)
        .concurrent_updates(True)
    )
    if settings.api_base_url:
        builder = builder.base_url(settings.api_base_url)
    application = builder.build()
    application.add_handler(CommandHandler("start", frontend.on_start))
    application.add_handler(CommandHandler("help", frontend.on_help))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, frontend.on_text))
    application.add_error_handler(frontend.on_error)
    return application


def run_telegram(chatbot: Chatbot, settings: Settings, webhook_url: str | None = None) -> int:
    application = build_application(chatbot, settings)
    logger.info("starting the Telegram bot (long polling)")
    application.run_polling(allowed_updates=Update.ALL_TYPES)
    return 0
