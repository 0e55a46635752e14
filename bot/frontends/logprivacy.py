"""Keeps users' messages and ids out of the logs of the Telegram libraries.

At DEBUG, python-telegram-bot logs whole updates ("Processing update Update(message=...)") and the
parameters of every Bot API call (chat ids, message texts). Unless the operator opted in with
LOG_USER_TEXT=true, `PrivacyFilter` replaces every such argument by a placeholder and keeps only
harmless ones (method names, status codes, URLs -- whose token the RedactingFormatter removes).
"""

from __future__ import annotations

import logging
import re

from bot.config import RedactingFormatter

HIDDEN = "<hidden>"
LIBRARY_LOGGERS = ("telegram", "httpx", "httpcore", "tornado", "apscheduler")
_SAFE_STRING = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}|https?://[^\s?#]+|HTTP/[0-9.]+")


def _safe(value: object) -> bool:
    if value is None or isinstance(value, (bool, float, type)):
        return True
    if isinstance(value, int):
        return abs(value) < 100_000  # status codes, counts; not chat or user ids
    if isinstance(value, str):
        return bool(_SAFE_STRING.fullmatch(value))
    return type(value).__name__ == "URL"  # httpx.URL: method path and token (redacted later)


class PrivacyFilter(logging.Filter):
    """Hides message contents and ids in records of the Telegram and HTTP libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(LIBRARY_LOGGERS):
            return True
        if isinstance(record.args, dict):
            record.args = {k: v if _safe(v) else HIDDEN for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(arg if _safe(arg) else HIDDEN for arg in record.args)
        elif not isinstance(record.msg, str):
            record.msg = HIDDEN
        return True


def install(log_user_text: bool, secrets: tuple[str, ...] = ()) -> None:
    """Attach the privacy filter to the root handlers (unless opted out) and redact `secrets` too."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(formatter, RedactingFormatter) and secrets:
            formatter.secrets = tuple(dict.fromkeys((*formatter.secrets, *(s for s in secrets if s))))
        if not log_user_text and not any(isinstance(f, PrivacyFilter) for f in handler.filters):
            handler.addFilter(PrivacyFilter())
