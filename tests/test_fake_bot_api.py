"""Tests of the fake Telegram Bot API itself (tests/fake_bot_api.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_bot_api import FakeBotAPI, parse_telegram_html, utf16_length  # noqa: E402

TOKEN = "123456:TEST-token"
CHAT = 4242


_client: httpx.Client | None = None


@pytest.fixture(scope="module", autouse=True)
def http_client() -> Iterator[httpx.Client]:
    """One shared client: building one per call costs ~20 ms (SSL context)."""
    global _client
    with httpx.Client(timeout=10) as client:
        _client = client
        yield client
    _client = None


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


def call(api: FakeBotAPI, method: str, *, token: str = TOKEN, **kwargs: object) -> httpx.Response:
    assert _client is not None
    return _client.post(f"{api.url}/bot{token}/{method}", **kwargs)  # type: ignore[arg-type]


def send(api: FakeBotAPI, text: str, **params: object) -> httpx.Response:
    return call(api, "sendMessage", data={"chat_id": str(CHAT), "text": text, **params})


# --------------------------------------------------------------------------
# Routing and auth
# --------------------------------------------------------------------------


def test_get_me_token_and_unknown_method(api: FakeBotAPI) -> None:
    assert api.url.startswith("http://127.0.0.1:")
    me = call(api, "getMe").json()
    assert me["ok"] is True
    assert me["result"]["id"] == 123456 and me["result"]["is_bot"] is True

    wrong = call(api, "getMe", token="123456:WRONG")
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}

    unknown = call(api, "sendTelepathy")
    assert unknown.status_code == 404
    assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}

    assert [m for m, _, _ in api.rejected] == ["getMe", "sendTelepathy"]
    assert TOKEN not in repr(api)


def test_send_message_form_json_and_multipart(api: FakeBotAPI) -> None:
    first = send(api, "hello").json()["result"]
    second = call(api, "sendMessage", json={"chat_id": CHAT, "text": "again"}).json()["result"]
    third = call(
        api, "sendMessage", data={"chat_id": str(CHAT), "text": "multi"}, files={"x": ("a.txt", b"1")}
    ).json()["result"]
    other = call(api, "sendMessage", json={"chat_id": 7, "text": "other chat"}).json()["result"]

    assert [first["message_id"], second["message_id"], third["message_id"]] == [1, 2, 3]
    assert other["message_id"] == 1
    assert first["chat"] == {"id": CHAT, "type": "private", "first_name": "Test"}
    assert first["from"]["id"] == 123456 and isinstance(first["date"], int)
    assert api.sent_to(CHAT) == ["hello", "again", "multi"]
    assert api.sent[0]["chat_id"] == CHAT and api.sent[0]["reply_markup"] is None
    assert [p["text"] for p in api.calls("sendmessage")] == ["hello", "again", "multi", "other chat"]


# --------------------------------------------------------------------------
# sendMessage strictness
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"chat_id": str(CHAT), "text": "   \n"}, "Bad Request: message text is empty"),
        ({"chat_id": str(CHAT)}, "Bad Request: message text is empty"),
        ({"text": "hi"}, "Bad Request: chat_id is empty"),
        ({"chat_id": str(CHAT), "text": "x" * 4097}, "Bad Request: message is too long"),
        ({"chat_id": str(CHAT), "text": "😀" * 2049}, "Bad Request: message is too long"),
        ({"chat_id": str(CHAT), "text": "hi", "reply_markup": "{nope"},
         "Bad Request: can't parse reply keyboard markup JSON object"),
        ({"chat_id": str(CHAT), "text": "hi",
          "reply_markup": json.dumps({"inline_keyboard": [[{"text": "b", "callback_data": "x" * 65}]]})},
         "Bad Request: BUTTON_DATA_INVALID"),
        ({"chat_id": str(CHAT), "text": "hi", "reply_to_message_id": "99"},
         "Bad Request: message to be replied not found"),
    ],
)
def test_send_message_rejections(api: FakeBotAPI, params: dict[str, str], description: str) -> None:
    response = call(api, "sendMessage", data=params)
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error_code": 400, "description": description}
    assert api.sent == []
    assert api.rejected == [("sendMessage", 400, description)]


def test_length_is_counted_after_entity_parsing_in_utf16(api: FakeBotAPI) -> None:
    assert utf16_length("😀") == 2
    assert send(api, "😀" * 2048).status_code == 200  # exactly 4096 code units
    assert send(api, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML").status_code == 200
    assert send(api, "&amp;" * 4096, parse_mode="HTML").status_code == 200
    assert send(api, "&amp;" * 4097, parse_mode="HTML").status_code == 400


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<br>", 'Unsupported start tag "br"'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'expected "</i>", found "</b>"'),
        ("1 < 2", 'Character "<" at byte offset 2'),
        ("salt & pepper", 'Character "&" at byte offset 5'),
        ("&nbsp;", 'Unsupported HTML entity "&nbsp"'),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler"'),
    ],
)
def test_html_parse_errors(api: FakeBotAPI, text: str, fragment: str) -> None:
    response = send(api, text, parse_mode="HTML")
    assert response.status_code == 400
    description = response.json()["description"]
    assert description.startswith("Bad Request: can't parse entities: ")
    assert fragment in description


def test_valid_html_is_accepted_and_returns_plain_text(api: FakeBotAPI) -> None:
    text = (
        '<b>B</b> <strong>S</strong> <i>i</i> <em>e</em> <u>u</u> <ins>n</ins> <s>s</s> '
        '<strike>k</strike> <del>d</del> <a href="https://x.org/?a=1&amp;b=2">l</a> '
        '<code>c</code> <pre><code class="language-py">p</code></pre> <tg-spoiler>t</tg-spoiler> '
        '<span class="tg-spoiler">z</span> <blockquote expandable>q</blockquote> '
        '<tg-emoji emoji-id="1">👍</tg-emoji> 1 &lt; 2 &gt; 0 &amp; &quot;x&quot; &#65;&#x42; ok > fine'
    )
    response = send(api, text, parse_mode="HTML")
    assert response.status_code == 200, response.text
    plain = response.json()["result"]["text"]
    assert plain == parse_telegram_html(text)
    assert plain.endswith('1 < 2 > 0 & "x" AB ok > fine')
    assert api.sent[0]["text"] == text and api.sent[0]["plain_text"] == plain


# --------------------------------------------------------------------------
# Flood control
# --------------------------------------------------------------------------


def test_flood_control() -> None:
    with FakeBotAPI(TOKEN, rate_limit_per_second=5) as api:
        statuses = [send(api, f"m{i}").status_code for i in range(7)]
        assert statuses == [200] * 5 + [429] * 2
        body = send(api, "again").json()
        assert body == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        assert api.rate_limited == 3
        assert api.sent_to(CHAT) == [f"m{i}" for i in range(5)]
        time.sleep(1.05)  # the rolling window has passed
        assert send(api, "later").status_code == 200


def test_forced_429s() -> None:
    with FakeBotAPI(TOKEN, rate_limit_per_second=100, force_429_every=3) as api:
        statuses = [send(api, f"m{i}").status_code for i in range(7)]
        assert statuses == [200, 200, 429, 200, 200, 429, 200]
        assert api.forced_429s == 2 and api.rate_limited == 2
        assert api.sent_to(CHAT) == ["m0", "m1", "m3", "m4", "m6"]


# --------------------------------------------------------------------------
# getUpdates
# --------------------------------------------------------------------------


def test_get_updates_offset_limit_and_long_polling(api: FakeBotAPI) -> None:
    ids = [api.push_message(CHAT, f"q{i}") for i in range(3)]
    assert ids == [1, 2, 3]
    result = call(api, "getUpdates", data={"limit": "2"}).json()["result"]
    assert [u["update_id"] for u in result] == [1, 2]
    assert result[0]["message"]["text"] == "q0"

    result = call(api, "getUpdates", data={"offset": "3"}).json()["result"]  # confirms 1 and 2
    assert [u["update_id"] for u in result] == [3]
    assert api.pending_updates == 1

    started = time.monotonic()
    assert call(api, "getUpdates", data={"offset": "4", "timeout": "0.3"}).json()["result"] == []
    assert 0.25 <= time.monotonic() - started < 2

    timer = threading.Timer(0.2, api.push_message, args=(CHAT, "/start"))
    timer.start()
    started = time.monotonic()
    result = call(api, "getUpdates", data={"offset": "4", "timeout": "5"}).json()["result"]
    assert time.monotonic() - started < 2
    message = result[0]["message"]
    assert message["text"] == "/start"
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]

    api.push_photo(CHAT)
    update = call(api, "getUpdates", data={"offset": "5"}).json()["result"][0]
    assert "text" not in update["message"] and len(update["message"]["photo"]) == 2


def test_webhook_blocks_polling(api: FakeBotAPI) -> None:
    assert call(api, "setWebhook", data={"url": "https://example.org/hook"}).json()["result"] is True
    conflict = call(api, "getUpdates")
    assert conflict.status_code == 409
    assert call(api, "deleteWebhook").json()["result"] is True
    assert call(api, "getUpdates").json()["result"] == []


def test_second_poller_terminates_the_first(api: FakeBotAPI) -> None:
    results: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: results.append(call(api, "getUpdates", data={"timeout": "5"}))
    )
    first.start()
    api.wait_for(lambda: len(api.calls("getUpdates")) == 1, timeout=2)
    assert call(api, "getUpdates").json()["result"] == []
    first.join(timeout=2)
    assert results[0].status_code == 409
    assert "terminated by other getUpdates request" in results[0].json()["description"]


def test_other_methods(api: FakeBotAPI) -> None:
    assert call(api, "setMyCommands", json={"commands": [{"command": "help", "description": "Help"}]}).json()["ok"]
    assert call(api, "getMyCommands").json()["result"] == [{"command": "help", "description": "Help"}]
    bad = call(api, "setMyCommands", json={"commands": [{"command": "Bad-Name", "description": "x"}]})
    assert bad.json()["description"] == "Bad Request: BOT_COMMAND_INVALID"
    assert call(api, "deleteMyCommands").json()["result"] is True and api.commands == []

    info = call(api, "getWebhookInfo").json()["result"]
    assert info == {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
    assert call(api, "sendChatAction", data={"chat_id": "1", "action": "dancing"}).status_code == 400
    assert call(api, "logOut").json() == {"ok": True, "result": True}
    assert call(api, "close").json() == {"ok": True, "result": True}

    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    message_id = call(
        api, "sendMessage", json={"chat_id": CHAT, "text": "pick", "reply_markup": markup}
    ).json()["result"]["message_id"]
    edit = {"chat_id": CHAT, "message_id": message_id}
    assert call(api, "editMessageReplyMarkup", json=edit).json()["result"]["message_id"] == message_id
    assert call(api, "editMessageReplyMarkup", json=edit).status_code == 400  # not modified
    missing = call(api, "editMessageText", json={"chat_id": CHAT, "message_id": 99, "text": "x"})
    assert missing.json()["description"] == "Bad Request: message to edit not found"
    assert [e["method"] for e in api.edits] == ["editMessageReplyMarkup"]

    api.push_message(CHAT, "typo")
    api.push_edited_message(CHAT, "fixed")
    updates = call(api, "getUpdates").json()["result"]
    assert updates[-1]["edited_message"]["text"] == "fixed"
    assert updates[-1]["edited_message"]["message_id"] == updates[-2]["message"]["message_id"]
    assert call(api, "editMessageText", json={**edit, "message_id": updates[-2]["message"]["message_id"],
                                              "text": "x"}).json()["description"] == (
        "Bad Request: message can't be edited"
    )


def test_wait_for_reports_what_was_sent(api: FakeBotAPI) -> None:
    send(api, "something else")
    with pytest.raises(AssertionError, match="something else"):
        api.wait_for_messages(CHAT, 2, timeout=0.2)


# --------------------------------------------------------------------------
# Against the real python-telegram-bot client
# --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_real_ptb_bot(api: FakeBotAPI) -> None:
    from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup
    from telegram.error import BadRequest, RetryAfter

    async def scenario() -> None:
        async with Bot(TOKEN, base_url=f"{api.url}/bot") as bot:
            assert bot.username == "fake_test_bot"
            await bot.set_my_commands([BotCommand("start", "Start the bot")])
            assert [c.command for c in await bot.get_my_commands()] == ["start"]

            api.push_message(CHAT, "/start", username="alice")
            updates = await bot.get_updates(timeout=2)
            assert updates[0].message is not None
            assert updates[0].message.text == "/start"
            assert updates[0].message.from_user is not None
            assert updates[0].message.from_user.username == "alice"
            user_message_id = updates[0].message.message_id

            await bot.send_chat_action(CHAT, "typing")
            keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("More", callback_data="more")]])
            sent = await bot.send_message(
                CHAT, "<b>Hello</b> &amp; welcome", parse_mode="HTML",
                reply_markup=keyboard, reply_to_message_id=user_message_id,
            )
            assert sent.text == "Hello & welcome"
            assert sent.chat_id == CHAT
            assert sent.reply_markup == keyboard

            with pytest.raises(BadRequest, match="(?i)can.t parse entities"):
                await bot.send_message(CHAT, "<p>nope</p>", parse_mode="HTML")

            api.push_callback_query(CHAT, "more")
            updates = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=2)
            query = updates[0].callback_query
            assert query is not None and query.data == "more"
            assert await query.answer()
            with pytest.raises(BadRequest, match="(?i)query id is invalid"):
                await query.answer()
            edited = await bot.edit_message_text("Edited", chat_id=CHAT, message_id=sent.message_id)
            assert isinstance(edited, type(sent)) and edited.text == "Edited"
            with pytest.raises(BadRequest, match="(?i)message is not modified"):
                await bot.edit_message_text("Edited", chat_id=CHAT, message_id=sent.message_id)

    async def flood() -> None:
        with FakeBotAPI(TOKEN, rate_limit_per_second=1) as strict:
            async with Bot(TOKEN, base_url=f"{strict.url}/bot") as bot:
                await bot.send_message(CHAT, "one")
                with pytest.raises(RetryAfter):
                    await bot.send_message(CHAT, "two")
            assert strict.sent_to(CHAT) == ["one"]

    asyncio.run(scenario())
    asyncio.run(flood())
    assert api.sent_to(CHAT) == ["<b>Hello</b> &amp; welcome"]
    assert api.sent[0]["reply_to_message_id"] == 1
    assert api.chat_actions == [(CHAT, "typing")]
    assert api.commands == [{"command": "start", "description": "Start the bot"}]
    assert api.errors == []


def test_real_ptb_application_polling(api: FakeBotAPI) -> None:
    from telegram import Update
    from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("hi there")

    async def scenario() -> None:
        app = ApplicationBuilder().token(TOKEN).base_url(f"{api.url}/bot").build()
        app.add_handler(CommandHandler("start", start))
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0.0, timeout=5)
            api.push_message(CHAT, "/start")
            assert await api.wait_for_messages_async(CHAT, 1, timeout=5) == ["hi there"]
            await app.updater.stop()
            await app.stop()

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 5
    assert api.pending_updates == 0  # the update was confirmed on shutdown
    assert api.calls("deleteWebhook") and api.calls("getUpdates")
    assert api.rejected == [] and api.errors == []
