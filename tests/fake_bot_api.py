"""A strict, loopback-only stand-in for the Telegram Bot API, for tests.

The fake is a real HTTP server (``http.server.ThreadingHTTPServer`` on
``127.0.0.1``, port chosen by the OS) running in a background thread, so the
*real* python-telegram-bot stack -- ``Bot``, ``Application``, ``Updater`` and
its httpx transport -- can be exercised end to end without touching the
network::

    with FakeBotAPI() as api:
        app = ApplicationBuilder().token(api.token).base_url(f"{api.url}/bot").build()
        ...
        api.push_message(42, "/start")
        api.wait_for_messages(42, 1)

PTB calls ``{base_url}{token}/{method}``, i.e. ``POST /bot<token>/<method>``.
Parameters may arrive as ``application/x-www-form-urlencoded`` (what PTB sends
when no file is uploaded; non-string values are JSON-encoded strings),
``multipart/form-data`` (file uploads), ``application/json`` or a query
string. All four are accepted and normalised into one ``dict``.

Why strict
----------
A permissive fake lets bugs through that the real service would reject in
production, so this one fails loudly wherever Telegram does, with
Telegram-shaped errors (``{"ok": false, "error_code": ..., "description":
...}``) that PTB turns into the same exceptions it would raise in production
(``BadRequest``, ``RetryAfter``, ``InvalidToken``, ``Conflict``):

* a wrong token gives 401 ``Unauthorized``; an unknown method 404 ``Not Found``;
* ``sendMessage`` rejects missing ``chat_id``, empty/whitespace text, and text
  longer than 4096 characters *after* entity parsing, counted in UTF-16 code
  units like Telegram (an emoji outside the BMP counts as two);
* with ``parse_mode=HTML`` the text is parsed (``html.parser``) and rejected
  for tags Telegram does not support (``<br>``, ``<p>``, ``<div>`` ...),
  unclosed or mismatched tags, and any ``<`` or ``&`` that is not part of a
  tag or of a supported entity (``&lt; &gt; &amp; &quot;`` and numeric
  references, each terminated by ``;``). This is slightly stricter than
  Telegram for ``&`` (Telegram tolerates a lone ``&``) -- escaping it is always
  correct, so a bot that passes here passes there;
* ``reply_markup`` must be valid JSON of a known keyboard shape, and
  ``callback_data`` must be 1-64 bytes;
* replying to a message the fake has never seen fails like Telegram's
  "message to be replied not found" (unless ``allow_sending_without_reply``);
* editing a message that does not exist, was not sent by the bot, or with
  identical content fails like Telegram ("message is not modified" ...);
* ``answerCallbackQuery`` only accepts each pushed query id once;
* flood control: more than ``rate_limit_per_second`` accepted ``sendMessage``
  calls in any rolling one-second window (globally) gives 429 with
  ``parameters.retry_after`` -- PTB raises ``RetryAfter``; the rejected message
  is not recorded; ``force_429_every=N`` also answers every Nth otherwise
  acceptable ``sendMessage`` with such a 429 (``forced_429s`` counts them), so
  tests can exercise the retry path deterministically;
* ``getUpdates`` long-polls, honours ``offset`` (confirming older updates),
  ``limit`` and ``timeout``; it answers 409 ``Conflict`` while a webhook is set
  and, like Telegram, terminates an older still-waiting ``getUpdates`` with 409
  when a newer one arrives (two bot instances polling at once is a bug).

Markdown/MarkdownV2 text is accepted without validation (its length is
measured on the raw text).

The token is never logged or included in error messages, and the server's
request logging is silenced.
"""

from __future__ import annotations

import asyncio
import copy
import email.parser
import email.policy
import itertools
import json
import re
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "FakeBotAPI",
    "SentMessage",
    "TelegramHTMLError",
    "parse_telegram_html",
    "utf16_length",
]

T = TypeVar("T")
JSONDict = dict[str, Any]

#: Maximum message length, in UTF-16 code units after entity parsing.
MAX_MESSAGE_LENGTH = 4096
#: Maximum size of ``callback_data`` in an inline keyboard button, in bytes.
MAX_CALLBACK_DATA_BYTES = 64

SUPPORTED_HTML_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code",
        "pre", "tg-spoiler", "span", "blockquote", "tg-emoji",
    }
)
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice",
        "upload_voice", "upload_document", "choose_sticker", "find_location",
        "record_video_note", "upload_video_note",
    }
)

_INLINE_BUTTON_ACTIONS = frozenset(
    {
        "url", "callback_data", "web_app", "login_url", "switch_inline_query",
        "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
        "copy_text", "callback_game", "pay",
    }
)

# How form-encoded string values are turned back into typed values.
_INT_FIELDS = frozenset(
    {
        "chat_id", "message_id", "offset", "limit", "reply_to_message_id",
        "message_thread_id", "cache_time", "max_connections", "from_chat_id",
    }
)
_FLOAT_FIELDS = frozenset({"timeout"})
_BOOL_FIELDS = frozenset(
    {
        "disable_notification", "protect_content", "allow_sending_without_reply",
        "disable_web_page_preview", "drop_pending_updates", "show_alert",
        "allow_paid_broadcast",
    }
)
_JSON_FIELDS = {
    "reply_markup": "reply keyboard markup",
    "reply_parameters": "reply parameters",
    "entities": "entities",
    "caption_entities": "caption entities",
    "commands": "commands",
    "scope": "bot command scope",
    "allowed_updates": "allowed updates",
    "link_preview_options": "link preview options",
}

_BOT_COMMAND_RE = re.compile(r"(?<![^\s])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{1,32})?")
_COMMAND_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")


def utf16_length(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit Telegram counts in."""
    return len(text.encode("utf-16-le")) // 2


class SentMessage(TypedDict):
    """One message accepted by ``sendMessage``, as recorded in ``FakeBotAPI.sent``."""

    chat_id: int
    message_id: int
    text: str  # exactly as the bot sent it (HTML tags and entities included)
    plain_text: str  # what the user sees: text after entity parsing
    parse_mode: str | None
    reply_markup: JSONDict | None
    reply_to_message_id: int | None
    message_thread_id: int | None  # the forum topic it was sent to
    time: float  # time.time() when accepted


class _APIError(Exception):
    """A Telegram-shaped error response."""

    def __init__(
        self,
        status: int,
        description: str,
        parameters: JSONDict | None = None,
        *,
        unobserved: bool = False,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters
        #: True when no client can see the error (it is then not recorded).
        self.unobserved = unobserved


def _bad_request(detail: str) -> _APIError:
    return _APIError(400, f"Bad Request: {detail}")


# --------------------------------------------------------------------------
# HTML parse mode
# --------------------------------------------------------------------------


class TelegramHTMLError(ValueError):
    """Raised by :func:`parse_telegram_html` for text Telegram would reject."""


class _TelegramHTMLParser(HTMLParser):
    """Validates Telegram's HTML subset and collects the resulting plain text.

    ``html.parser`` is lenient (it silently passes stray ``<``, ``</>`` or
    comments through), so besides the callbacks a final sweep checks that every
    ``<`` and ``&`` in the source was consumed by a tag or a valid entity.
    """

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self._source = source
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(source) if ch == "\n"]
        self._stack: list[str] = []
        self._plain: list[str] = []
        self._covered: set[int] = set()  # indices of '<' / '&' consumed legitimately

    # -- positions ---------------------------------------------------------
    def _index(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _byte_offset(self, index: int) -> int:
        return len(self._source[:index].encode("utf-8"))

    def _fail(self, message: str) -> None:
        raise TelegramHTMLError(message)

    # -- callbacks ---------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        index = self._index()
        if tag not in SUPPORTED_HTML_TAGS:
            self._fail(f'Unsupported start tag "{tag}" at byte offset {self._byte_offset(index)}')
        attributes = dict(attrs)
        if tag == "a" and not attributes.get("href"):
            self._fail(f'Tag "a" must have attribute "href" at byte offset {self._byte_offset(index)}')
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            self._fail('Tag "span" must have class "tg-spoiler"')
        if tag == "tg-emoji" and not attributes.get("emoji-id"):
            self._fail('Tag "tg-emoji" must have attribute "emoji-id"')
        self._covered.add(index)
        self._stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        index = self._index()
        offset = self._byte_offset(index)
        if not self._stack:
            self._fail(f"Unexpected end tag at byte offset {offset}")
        expected = self._stack[-1]
        if tag != expected:
            self._fail(
                f'Unmatched end tag at byte offset {offset}, expected "</{expected}>", found "</{tag}>"'
            )
        self._stack.pop()
        self._covered.add(index)

    def handle_data(self, data: str) -> None:
        self._plain.append(data)

    def handle_entityref(self, name: str) -> None:
        index = self._index()
        if name not in _NAMED_ENTITIES or not self._source.startswith(f"&{name};", index):
            self._fail(
                f'Unsupported HTML entity "&{name}" at byte offset {self._byte_offset(index)}; '
                "only &lt; &gt; &amp; &quot; and numeric entities are supported"
            )
        self._covered.add(index)
        self._plain.append(_NAMED_ENTITIES[name])

    def handle_charref(self, name: str) -> None:
        index = self._index()
        try:
            code_point = int(name[1:], 16) if name[:1] in ("x", "X") else int(name, 10)
        except ValueError:
            code_point = -1
        if (
            not self._source.startswith(f"&#{name};", index)
            or not 0 < code_point <= 0x10FFFF
            or 0xD800 <= code_point <= 0xDFFF
        ):
            self._fail(f'Invalid HTML entity "&#{name}" at byte offset {self._byte_offset(index)}')
        self._covered.add(index)
        self._plain.append(chr(code_point))

    # -- driver ------------------------------------------------------------
    def run(self) -> str:
        self.feed(self._source)
        self.close()
        if self._stack:
            self._fail(f'Can\'t find end tag corresponding to start tag "{self._stack[-1]}"')
        self._check_uncovered()
        return "".join(self._plain)

    def _check_uncovered(self) -> None:
        in_tag = False
        quote: str | None = None
        for index, ch in enumerate(self._source):
            if in_tag:  # skip over a tag we accepted, minding quoted attributes
                if quote:
                    if ch == quote:
                        quote = None
                elif ch in "\"'":
                    quote = ch
                elif ch == ">":
                    in_tag = False
                continue
            if ch not in "<&":
                continue
            if index in self._covered:
                in_tag = ch == "<"
                continue
            offset = self._byte_offset(index)
            escape = "&lt;" if ch == "<" else "&amp;"
            self._fail(
                f'Character "{ch}" at byte offset {offset} is not part of a tag or entity; '
                f"escape it as {escape}"
            )


def parse_telegram_html(text: str) -> str:
    """Validate ``text`` as Telegram HTML and return the plain text users see.

    Raises:
        TelegramHTMLError: with a Telegram-like description of the problem.
    """
    return _TelegramHTMLParser(text).run()


# --------------------------------------------------------------------------
# Request parsing helpers
# --------------------------------------------------------------------------


def _parse_body(content_type: str, body: bytes) -> JSONDict:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return {}
    if media_type == "application/json":
        try:
            value = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad_request("can't parse JSON request body") from exc
        if not isinstance(value, dict):
            raise _bad_request("JSON request body must be an object")
        return value
    if media_type == "multipart/form-data":
        return _parse_multipart(content_type, body)
    # x-www-form-urlencoded, or no content type at all
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise _bad_request("request body is not valid UTF-8") from exc
    return {key: values[-1] for key, values in pairs.items()}


def _parse_multipart(content_type: str, body: bytes) -> JSONDict:
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise _bad_request("can't parse multipart/form-data request body")
    result: JSONDict = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload: bytes = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            result[str(name)] = {"filename": filename, "size": len(payload)}
        else:
            result[str(name)] = payload.decode("utf-8")
    return result


def _coerce_params(raw: Mapping[str, Any]) -> JSONDict:
    """Turn string-typed form values back into ints, floats, bools and JSON."""
    params: JSONDict = {}
    for key, value in raw.items():
        if isinstance(value, str):
            stripped = value.strip()
            if key in _JSON_FIELDS:
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise _bad_request(f"can't parse {_JSON_FIELDS[key]} JSON object") from exc
            elif key in _INT_FIELDS and re.fullmatch(r"-?\d+", stripped):
                value = int(stripped)
            elif key in _FLOAT_FIELDS:
                try:
                    number = float(stripped)
                except ValueError as exc:
                    raise _bad_request(f"wrong parameter {key} in request") from exc
                value = int(number) if number.is_integer() else number
            elif key in _BOOL_FIELDS:
                value = stripped.lower() in ("true", "1")
        params[key] = value
    return params


def _as_int(params: Mapping[str, Any], key: str, default: int) -> int:
    value = params.get(key, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad_request(f"wrong parameter {key} in request")
    return int(value)


def _as_float(params: Mapping[str, Any], key: str, default: float) -> float:
    value = params.get(key, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad_request(f"wrong parameter {key} in request")
    return float(value)


def _validate_reply_markup(value: Any) -> JSONDict | None:
    """Check a (decoded) reply_markup roughly the way Telegram does."""
    if value is None:
        return None
    invalid = _bad_request("can't parse reply keyboard markup JSON object")
    if not isinstance(value, dict):
        raise invalid
    if "inline_keyboard" in value:
        rows = value["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad_request(
                        'can\'t parse inline keyboard button: Field "text" must be of type String'
                    )
                actions = _INLINE_BUTTON_ACTIONS.intersection(button)
                if not actions:
                    raise _bad_request(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in button:
                    data = button["callback_data"]
                    size = len(data.encode("utf-8")) if isinstance(data, str) else 0
                    if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                        raise _bad_request("BUTTON_DATA_INVALID")
    elif "keyboard" in value:
        rows = value["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request(
                'field "keyboard" of the ReplyKeyboardMarkup should be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                if not isinstance(button, str) and not (
                    isinstance(button, dict) and isinstance(button.get("text"), str)
                ):
                    raise _bad_request(
                        'can\'t parse keyboard button: Field "text" must be of type String'
                    )
    elif value.get("remove_keyboard") is True or value.get("force_reply") is True:
        pass
    else:
        raise invalid
    return value


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: FakeBotAPI) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Never print tracebacks (they could carry request data); keep them for tests.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # client went away
        self.fake.errors.append(f"{type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silenced: request lines contain the bot token."""

    def setup(self) -> None:
        super().setup()
        self.server.fake._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track_connection(self.connection, add=False)

    def do_POST(self) -> None:  # noqa: N802
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        status, payload = self.server.fake._dispatch(
            self.path, self.headers.get("Content-Type", ""), body, self._client_gone
        )
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    do_GET = do_POST  # noqa: N815

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _client_gone(self) -> bool:
        """True if the client closed its side of the connection."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


# --------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------


class FakeBotAPI:
    """A strict fake Telegram Bot API server on ``127.0.0.1`` (see module docs).

    Use as a context manager, or call :meth:`start` / :meth:`stop`.

    Recorded state (append-only lists; safe to read from tests at any time):

    * ``sent`` -- accepted ``sendMessage`` calls (:class:`SentMessage` dicts);
    * ``requests`` -- every authorised request as ``(method, params)``;
    * ``rejected`` -- every error response as ``(method, status, description)``;
    * ``chat_actions`` -- ``(chat_id, action)`` from ``sendChatAction``;
    * ``edits`` -- accepted ``editMessageText`` / ``editMessageReplyMarkup`` calls;
    * ``callback_answers`` -- accepted ``answerCallbackQuery`` params;
    * ``commands`` -- the command list from the last ``setMyCommands``;
    * ``rate_limited`` -- number of 429 responses sent (``forced_429s`` of them forced);
    * ``errors`` -- internal errors of the fake itself (should stay empty).
    """

    def __init__(
        self,
        token: str = "123456:TEST-token",
        rate_limit_per_second: int = 30,
        *,
        bot_username: str = "fake_test_bot",
        bot_first_name: str = "Test Bot",
        force_429_every: int = 0,
    ) -> None:
        bot_id, _, _ = token.partition(":")
        if not bot_id.isdigit():
            raise ValueError("token must look like '<digits>:<secret>'")
        self.token = token
        self.rate_limit_per_second = rate_limit_per_second
        self.force_429_every = force_429_every
        self.bot_user: JSONDict = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }

        self.sent: list[SentMessage] = []
        self.requests: list[tuple[str, JSONDict]] = []
        self.rejected: list[tuple[str, int, str]] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.edits: list[JSONDict] = []
        self.callback_answers: list[JSONDict] = []
        self.commands: list[JSONDict] = []
        self.rate_limited = 0
        self.forced_429s = 0
        self._send_attempts = 0
        self.errors: list[str] = []
        self.webhook_url = ""

        self._cond = threading.Condition(threading.RLock())
        self._updates: list[JSONDict] = []  # unconfirmed, in update_id order
        self._last_update_id = 0
        self._poll_generation = 0
        self._send_times: deque[float] = deque()
        self._message_counters: dict[int, int] = {}
        self._messages: dict[tuple[int, int], JSONDict] = {}  # every message seen, by (chat, id)
        self._bot_content: dict[tuple[int, int], tuple[Any, ...]] = {}  # for "not modified"
        self._chats: dict[int, JSONDict] = {}
        self._open_callback_queries: set[str] = set()
        self._callback_ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

        self._methods: dict[str, tuple[str, Callable[[JSONDict, Callable[[], bool]], Any]]] = {}
        for name, handler in {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "sendChatAction": self._send_chat_action,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "logOut": self._ok,
            "close": self._ok,
        }.items():
            self._methods[name.lower()] = (name, handler)

    def __repr__(self) -> str:  # never show the token
        return f"<FakeBotAPI url={self.url if self._server else None!r}>"

    # -- lifecycle ---------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; use ``f"{url}/bot"`` as PTB's base_url."""
        if self._server is None:
            raise RuntimeError("FakeBotAPI is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeBotAPI:
        if self._server is not None:
            raise RuntimeError("FakeBotAPI already started")
        self._closed = False
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="FakeBotAPI",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release long-polls and close open connections."""
        server, thread = self._server, self._thread
        if server is None:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        server.shutdown()
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeBotAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._cond:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- inspection --------------------------------------------------------
    def sent_to(self, chat_id: int) -> list[str]:
        """Texts (as sent by the bot) of accepted messages to ``chat_id``, in order."""
        with self._cond:
            return [m["text"] for m in self.sent if m["chat_id"] == chat_id]

    def calls(self, method: str) -> list[JSONDict]:
        """Params of every authorised request to ``method`` (case-insensitive)."""
        wanted = method.lower()
        with self._cond:
            return [params for name, params in self.requests if name.lower() == wanted]

    @property
    def pending_updates(self) -> int:
        """Number of pushed updates the bot has not confirmed yet."""
        with self._cond:
            return len(self._updates)

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 10.0, *, what: str | None = None
    ) -> T:
        """Block until ``predicate()`` is truthy and return its value.

        The predicate is re-checked whenever the fake's state changes (and at
        least every 50 ms). On timeout raises ``AssertionError`` summarising
        what the bot sent and what was rejected.

        Do not call this from a coroutine running PTB on the same event loop --
        it would block the loop; use :meth:`wait_for_async` there.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._timeout_summary(timeout, what))
                self._cond.wait(min(remaining, 0.05))

    def wait_for_messages(self, chat_id: int, count: int, timeout: float = 10.0) -> list[str]:
        """Wait until at least ``count`` messages were sent to ``chat_id``; return their texts."""
        self.wait_for(
            lambda: len(self.sent_to(chat_id)) >= count,
            timeout,
            what=f"{count} message(s) to chat {chat_id}",
        )
        return self.sent_to(chat_id)

    async def wait_for_async(
        self, predicate: Callable[[], T], timeout: float = 10.0, *, what: str | None = None
    ) -> T:
        """Like :meth:`wait_for`, but yields to the event loop while waiting."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_summary(timeout, what))
            await asyncio.sleep(0.01)

    async def wait_for_messages_async(
        self, chat_id: int, count: int, timeout: float = 10.0
    ) -> list[str]:
        """Like :meth:`wait_for_messages`, but yields to the event loop while waiting."""
        await self.wait_for_async(
            lambda: len(self.sent_to(chat_id)) >= count,
            timeout,
            what=f"{count} message(s) to chat {chat_id}",
        )
        return self.sent_to(chat_id)

    def _timeout_summary(self, timeout: float, what: str | None) -> str:
        with self._cond:
            lines = [f"timed out after {timeout:g}s waiting for {what or 'condition'}"]
            lines.append(f"sent {len(self.sent)} message(s):")
            lines += [f"  -> {m['chat_id']}: {m['text'][:200]!r}" for m in self.sent[-15:]]
            if self.rejected:
                lines.append(f"rejected {len(self.rejected)} request(s):")
                lines += [f"  !! {m} {s}: {d}" for m, s, d in self.rejected[-15:]]
            lines.append(f"unconfirmed updates: {len(self._updates)}")
            lines.append(f"methods called: {sorted({m for m, _ in self.requests})}")
            if self.errors:
                lines.append(f"internal errors of the fake: {self.errors}")
        return "\n".join(lines)

    # -- injecting updates -------------------------------------------------
    def push_update(self, update: Mapping[str, Any]) -> int:
        """Queue a raw update (``update_id`` is assigned if absent); return its id."""
        update = copy.deepcopy(dict(update))
        with self._cond:
            if "update_id" in update:
                update_id = int(update["update_id"])
                if update_id <= self._last_update_id:
                    raise ValueError(f"update_id must be > {self._last_update_id}")
            else:
                update_id = self._last_update_id + 1
                update = {"update_id": update_id, **update}
            self._last_update_id = update_id
            for key in ("message", "edited_message"):
                message = update.get(key)
                if isinstance(message, dict) and "chat" in message and "message_id" in message:
                    self._remember_message(message)
            self._updates.append(update)
            self._cond.notify_all()
            return update_id

    def push_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        entities: list[JSONDict] | None = None,
        message_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        """Queue a text message from a user; return the update id.

        Like Telegram, ``bot_command`` entities are added automatically for
        ``/commands`` unless ``entities`` is given (pass ``[]`` for none).
        """
        with self._cond:
            message = self._user_message(chat_id, user_id, chat_type, username, message_id)
            message["text"] = text
            found = _command_entities(text) if entities is None else entities
            if found:
                message["entities"] = found
            if reply_to_message_id is not None:
                replied = self._messages.get((chat_id, reply_to_message_id))
                if replied is None:
                    raise ValueError(f"unknown message {reply_to_message_id} in chat {chat_id}")
                message["reply_to_message"] = copy.deepcopy(replied)
            return self.push_update({"message": message})

    def push_edited_message(
        self,
        chat_id: int,
        text: str,
        *,
        message_id: int | None = None,
        user_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        entities: list[JSONDict] | None = None,
    ) -> int:
        """Queue an ``edited_message`` update; edits ``message_id`` or the latest user message."""
        with self._cond:
            if message_id is None:
                user_messages = [
                    mid
                    for (cid, mid), msg in self._messages.items()
                    if cid == chat_id and not msg.get("from", {}).get("is_bot")
                ]
                if not user_messages:
                    raise ValueError(f"no user message in chat {chat_id} to edit")
                message_id = max(user_messages)
            original = self._messages.get((chat_id, message_id))
            if original is None:
                raise ValueError(f"unknown message {message_id} in chat {chat_id}")
            message = copy.deepcopy(original)
            if user_id is not None or username is not None:
                message["from"] = self._user(user_id if user_id is not None else chat_id, username)
            message["chat"] = self._chat(chat_id, chat_type, username)
            message["text"] = text
            message["edit_date"] = int(time.time())
            message.pop("entities", None)
            found = _command_entities(text) if entities is None else entities
            if found:
                message["entities"] = found
            return self.push_update({"edited_message": message})

    def push_callback_query(
        self,
        chat_id: int,
        data: str,
        *,
        message_id: int | None = None,
        user_id: int | None = None,
        username: str | None = None,
    ) -> int:
        """Queue a ``callback_query`` (a button press) on a bot message; return the update id.

        ``message_id`` defaults to the bot's latest message in ``chat_id``.
        The query id is accepted exactly once by ``answerCallbackQuery``.
        """
        with self._cond:
            if message_id is None:
                bot_messages = [mid for (cid, mid) in self._bot_content if cid == chat_id]
                if not bot_messages:
                    raise ValueError(f"no bot message in chat {chat_id}; pass message_id")
                message_id = max(bot_messages)
            message = self._messages.get((chat_id, message_id))
            if message is None:
                raise ValueError(f"unknown message {message_id} in chat {chat_id}")
            query_id = f"cbq-{next(self._callback_ids)}"
            self._open_callback_queries.add(query_id)
            uid = user_id if user_id is not None else (chat_id if chat_id > 0 else 777000)
            return self.push_update(
                {
                    "callback_query": {
                        "id": query_id,
                        "from": self._user(uid, username),
                        "message": copy.deepcopy(message),
                        "chat_instance": f"ci-{chat_id}",
                        "data": data,
                    }
                }
            )

    def push_photo(
        self,
        chat_id: int,
        *,
        caption: str | None = None,
        user_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
    ) -> int:
        """Queue a photo message (no ``text``, a ``photo`` size array); return the update id."""
        with self._cond:
            message = self._user_message(chat_id, user_id, chat_type, username, None)
            unique = f"{chat_id}-{message['message_id']}"
            message["photo"] = [
                {"file_id": f"photo-s-{unique}", "file_unique_id": f"ps{unique}",
                 "width": 90, "height": 90, "file_size": 1200},
                {"file_id": f"photo-m-{unique}", "file_unique_id": f"pm{unique}",
                 "width": 800, "height": 800, "file_size": 48000},
            ]
            if caption is not None:
                message["caption"] = caption
            return self.push_update({"message": message})

    # -- message/chat/user construction ------------------------------------
    def _next_message_id(self, chat_id: int) -> int:
        self._message_counters[chat_id] = self._message_counters.get(chat_id, 0) + 1
        return self._message_counters[chat_id]

    def _remember_message(self, message: JSONDict) -> None:
        chat_id = int(message["chat"]["id"])
        message_id = int(message["message_id"])
        self._chats.setdefault(chat_id, copy.deepcopy(message["chat"]))
        self._message_counters[chat_id] = max(self._message_counters.get(chat_id, 0), message_id)
        self._messages[(chat_id, message_id)] = copy.deepcopy(message)

    @staticmethod
    def _user(user_id: int, username: str | None) -> JSONDict:
        user: JSONDict = {
            "id": user_id, "is_bot": False, "first_name": "Test", "language_code": "en"
        }
        if username:
            user["username"] = username
        return user

    def _chat(
        self, chat_id: int, chat_type: str | None = None, username: str | None = None
    ) -> JSONDict:
        known = self._chats.get(chat_id)
        if known is not None and (chat_type is None or known["type"] == chat_type):
            return copy.deepcopy(known)
        if chat_type is None:
            chat_type = "private" if chat_id > 0 else (
                "supergroup" if str(chat_id).startswith("-100") else "group"
            )
        chat: JSONDict = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = "Test"
            if username:
                chat["username"] = username
        else:
            chat["title"] = f"Test {chat_type}"
        self._chats[chat_id] = chat
        return copy.deepcopy(chat)

    def _user_message(
        self,
        chat_id: int,
        user_id: int | None,
        chat_type: str,
        username: str | None,
        message_id: int | None,
    ) -> JSONDict:
        if user_id is None:
            user_id = chat_id if chat_type == "private" else 777000
        return {
            "message_id": message_id if message_id is not None else self._next_message_id(chat_id),
            "from": self._user(user_id, username),
            "chat": self._chat(chat_id, chat_type, username),
            "date": int(time.time()),
        }

    # -- dispatch ----------------------------------------------------------
    def _dispatch(
        self, path: str, content_type: str, body: bytes, client_gone: Callable[[], bool]
    ) -> tuple[int, bytes]:
        """Handle one HTTP request; return (status, JSON body)."""
        split = urlsplit(path)
        match = re.fullmatch(r"/bot([^/]*)/([^/]*)", split.path)
        with self._cond:
            method = match.group(2) if match else ""
            try:
                if match is None:
                    raise _APIError(404, "Not Found")
                if unquote(match.group(1)) != self.token:
                    raise _APIError(401, "Unauthorized")
                canonical, handler = self._methods.get(method.lower(), (method, None))
                method = canonical
                raw = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
                raw.update(_parse_body(content_type, body))
                try:
                    params = _coerce_params(raw)
                except _APIError:
                    self.requests.append((method, raw))
                    raise
                self.requests.append((method, params))
                if handler is None:
                    raise _APIError(404, "Not Found")
                result = handler(params, client_gone)
                response: JSONDict = {"ok": True, "result": result}
                status = 200
            except _APIError as err:
                status = err.status
                response = {"ok": False, "error_code": err.status, "description": err.description}
                if err.parameters:
                    response["parameters"] = err.parameters
                if not err.unobserved:
                    self.rejected.append((method, err.status, err.description))
            except Exception as exc:  # a bug in the fake: report, don't crash the server
                status = 500
                response = {"ok": False, "error_code": 500, "description": "Internal Server Error"}
                self.errors.append(f"{method}: {type(exc).__name__}: {exc}")
                self.rejected.append((method, 500, f"{type(exc).__name__}: {exc}"))
            payload = json.dumps(response, ensure_ascii=False).encode("utf-8")
            self._cond.notify_all()
            return status, payload

    # -- methods -----------------------------------------------------------
    def _ok(self, params: JSONDict, client_gone: Callable[[], bool]) -> bool:
        return True

    def _get_me(self, params: JSONDict, client_gone: Callable[[], bool]) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _get_updates(self, params: JSONDict, client_gone: Callable[[], bool]) -> list[JSONDict]:
        if self.webhook_url:
            raise _APIError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params, "offset", 0)
        limit = _as_int(params, "limit", 100)
        limit = limit if 1 <= limit <= 100 else 100
        timeout = max(0.0, _as_float(params, "timeout", 0.0))

        self._poll_generation += 1
        generation = self._poll_generation
        self._cond.notify_all()  # terminate an older poll that is still waiting

        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

        deadline = time.monotonic() + timeout
        while True:
            if self._closed:
                return []
            if generation != self._poll_generation:
                raise _APIError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                    unobserved=client_gone(),
                )
            if self._updates:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._cond.wait(remaining)

    def _require_chat(self, params: JSONDict) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if isinstance(chat_id, bool) or not isinstance(chat_id, int):
            raise _bad_request("chat not found")
        return chat_id

    @staticmethod
    def _validate_text(text: Any, parse_mode: Any) -> str:
        """Return the plain text after entity parsing, or raise a 400."""
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("message text is empty")
        mode = parse_mode.lower() if isinstance(parse_mode, str) else ""
        if mode == "html":
            try:
                plain = parse_telegram_html(text)
            except TelegramHTMLError as err:
                raise _bad_request(f"can't parse entities: {err}") from None
        elif mode in ("", "markdown", "markdownv2"):
            plain = text
        else:
            raise _bad_request("unsupported parse_mode")
        if not plain.strip():
            raise _bad_request("message text is empty")
        if utf16_length(plain) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        return plain

    def _check_flood(self) -> None:
        self._send_attempts += 1
        if self.force_429_every and self._send_attempts % self.force_429_every == 0:
            self.rate_limited += 1
            self.forced_429s += 1
            raise _APIError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        now = time.monotonic()
        while self._send_times and now - self._send_times[0] >= 1.0:
            self._send_times.popleft()
        if len(self._send_times) >= self.rate_limit_per_second:
            self.rate_limited += 1
            raise _APIError(
                429, "Too Many Requests: retry after 1", {"retry_after": 1}
            )
        self._send_times.append(now)

    def _send_message(self, params: JSONDict, client_gone: Callable[[], bool]) -> JSONDict:
        chat_id = self._require_chat(params)
        text = params.get("text")
        parse_mode = params.get("parse_mode") or None
        plain = self._validate_text(text, parse_mode)
        markup = _validate_reply_markup(params.get("reply_markup"))

        reply_parameters = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        reply_to = params.get("reply_to_message_id")
        if isinstance(reply_parameters, dict):
            reply_to = reply_parameters.get("message_id", reply_to)
            allow_missing = allow_missing or bool(reply_parameters.get("allow_sending_without_reply"))
        elif reply_parameters is not None:
            raise _bad_request("can't parse reply parameters JSON object")
        if reply_to is not None and not isinstance(reply_to, int):
            raise _bad_request("wrong parameter reply_to_message_id in request")
        replied = self._messages.get((chat_id, reply_to)) if reply_to is not None else None
        if reply_to is not None and replied is None and not allow_missing:
            raise _bad_request("message to be replied not found")
        thread = params.get("message_thread_id")
        if thread is not None and (not isinstance(thread, int) or isinstance(thread, bool)):
            raise _bad_request("wrong parameter message_thread_id in request")

        self._check_flood()

        message_id = self._next_message_id(chat_id)
        message: JSONDict = {
            "message_id": message_id,
            "from": dict(self.bot_user),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            "text": plain,
        }
        if replied is not None:
            message["reply_to_message"] = copy.deepcopy(replied)
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._remember_message(message)
        self._bot_content[(chat_id, message_id)] = (text, parse_mode, markup)
        self.sent.append(
            SentMessage(
                chat_id=chat_id,
                message_id=message_id,
                text=text,
                plain_text=plain,
                parse_mode=parse_mode,
                reply_markup=markup,
                reply_to_message_id=reply_to,
                message_thread_id=thread,
                time=time.time(),
            )
        )
        return message

    def _send_chat_action(self, params: JSONDict, client_gone: Callable[[], bool]) -> bool:
        chat_id = self._require_chat(params)
        action = params.get("action")
        if action not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        self.chat_actions.append((chat_id, action))
        return True

    def _set_my_commands(self, params: JSONDict, client_gone: Callable[[], bool]) -> bool:
        commands = params.get("commands")
        if commands is None:
            raise _bad_request('parameter "commands" is required')
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not _COMMAND_NAME_RE.fullmatch(name):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True

    def _get_my_commands(self, params: JSONDict, client_gone: Callable[[], bool]) -> list[JSONDict]:
        return copy.deepcopy(self.commands)

    def _delete_my_commands(self, params: JSONDict, client_gone: Callable[[], bool]) -> bool:
        self.commands = []
        return True

    def _set_webhook(self, params: JSONDict, client_gone: Callable[[], bool]) -> bool:
        url = params.get("url")
        if url is None:
            raise _bad_request('parameter "url" is required')
        if url and not str(url).startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook_url = str(url)
        return True

    def _delete_webhook(self, params: JSONDict, client_gone: Callable[[], bool]) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook_url = ""
        return True

    def _get_webhook_info(self, params: JSONDict, client_gone: Callable[[], bool]) -> JSONDict:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    def _answer_callback_query(self, params: JSONDict, client_gone: Callable[[], bool]) -> bool:
        query_id = params.get("callback_query_id")
        if query_id is None or query_id == "":
            raise _bad_request('parameter "callback_query_id" is required')
        if str(query_id) not in self._open_callback_queries:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        self._open_callback_queries.discard(str(query_id))
        self.callback_answers.append(dict(params))
        return True

    def _editable_message(self, params: JSONDict) -> tuple[int, int, JSONDict]:
        chat_id = self._require_chat(params)
        message_id = params.get("message_id")
        if message_id is None or message_id == "":
            raise _bad_request("message identifier is not specified")
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise _bad_request("message to edit not found")
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise _bad_request("message to edit not found")
        if (chat_id, message_id) not in self._bot_content:
            raise _bad_request("message can't be edited")
        return chat_id, message_id, message

    def _edit_message_text(
        self, params: JSONDict, client_gone: Callable[[], bool]
    ) -> JSONDict | bool:
        text = params.get("text")
        parse_mode = params.get("parse_mode") or None
        markup = _validate_reply_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            self._validate_text(text, parse_mode)
            self.edits.append({"method": "editMessageText", **params, "time": time.time()})
            return True
        chat_id, message_id, message = self._editable_message(params)
        plain = self._validate_text(text, parse_mode)
        if self._bot_content[(chat_id, message_id)] == (text, parse_mode, markup):
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._bot_content[(chat_id, message_id)] = (text, parse_mode, markup)
        message["text"] = plain
        message["edit_date"] = int(time.time())
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        self.edits.append(
            {"method": "editMessageText", "chat_id": chat_id, "message_id": message_id,
             "text": text, "parse_mode": parse_mode, "reply_markup": markup, "time": time.time()}
        )
        return copy.deepcopy(message)

    def _edit_message_reply_markup(
        self, params: JSONDict, client_gone: Callable[[], bool]
    ) -> JSONDict | bool:
        markup = _validate_reply_markup(params.get("reply_markup"))
        if markup is not None and "inline_keyboard" not in markup:
            raise _bad_request("inline keyboard expected")
        if params.get("inline_message_id"):
            self.edits.append({"method": "editMessageReplyMarkup", **params, "time": time.time()})
            return True
        chat_id, message_id, message = self._editable_message(params)
        text, parse_mode, old_markup = self._bot_content[(chat_id, message_id)]
        if old_markup == markup:
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._bot_content[(chat_id, message_id)] = (text, parse_mode, markup)
        message["edit_date"] = int(time.time())
        if markup is not None:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        self.edits.append(
            {"method": "editMessageReplyMarkup", "chat_id": chat_id, "message_id": message_id,
             "reply_markup": markup, "time": time.time()}
        )
        return copy.deepcopy(message)


def _command_entities(text: str) -> list[JSONDict]:
    """``bot_command`` entities as Telegram would attach them (UTF-16 offsets)."""
    return [
        {
            "type": "bot_command",
            "offset": utf16_length(text[: match.start()]),
            "length": utf16_length(match.group()),
        }
        for match in _BOT_COMMAND_RE.finditer(text)
    ]
