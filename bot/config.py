"""Settings from the environment and `.env`, and logging that never shows the bot token."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EMERGENCY_NUMBER_RE = re.compile(r"^\+?[0-9][0-9 -]{1,14}$")
# Telegram bot tokens look like 123456789:AAE...; they appear in Bot API URLs after "/bot".
TOKEN_RE = re.compile(r"(?<![0-9])[0-9]{5,}:[A-Za-z0-9_-]{20,}")
REDACTED = "<redacted>"
DOTENV_NAME_RE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    telegram_token: str | None = None
    api_base_url: str | None = None
    emergency_number: str = "112"
    log_level: str = "INFO"
    log_user_text: bool = False
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    feedback_db: str | None = None
    max_message_chars: int = 2000
    startup_attempts: int = 6

    def require_token(self) -> str:
        """The bot token, checked; raises ConfigError naming TELEGRAM_BOT_TOKEN."""
        if not self.telegram_token:
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN is missing or blank: put it in the environment or in .env (see .env.example)"
            )
        if not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", self.telegram_token):
            raise ConfigError("TELEGRAM_BOT_TOKEN does not look like a bot token (expected digits:letters)")
        return self.telegram_token

    def check_telegram(self) -> None:
        """Everything `python -m bot telegram` needs; raises ConfigError naming the variable."""
        self.require_token()
        if self.api_base_url:
            parts = split_url(self.api_base_url, "TELEGRAM_API_BASE_URL")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    "TELEGRAM_API_BASE_URL must be an http(s) URL such as http://127.0.0.1:8081/bot, "
                    f"got {self.api_base_url!r}"
                )
        if self.webhook_url:
            check_webhook_url(self.webhook_url, "TELEGRAM_WEBHOOK_URL")


def split_url(url: str, name: str) -> SplitResult:
    """urlsplit, with a malformed URL (bad IPv6 brackets, bad port) a ConfigError naming the setting."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what raises for a bad one
    except ValueError as error:
        raise ConfigError(f"{name} is not a valid URL ({error}), got {url!r}") from None
    return parts


def check_webhook_url(url: str, name: str) -> SplitResult:
    """The parts of an https webhook URL; anything else is a ConfigError naming the setting."""
    parts = split_url(url, name)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"{name} must be an https URL, got {url!r}")
    return parts


def read_environment(env: Mapping[str, str] | None = None, dotenv_path: Path | str | None = ".env") -> dict[str, str]:
    """Variables from `.env` overlaid by the real environment (which wins)."""
    merged: dict[str, str] = {}
    if dotenv_path and Path(dotenv_path).is_file():
        text = read_dotenv(Path(dotenv_path))
        merged.update({k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None})
    merged.update(os.environ if env is None else env)
    return merged


def read_dotenv(path: Path) -> str:
    """The text of a .env file; unreadable, non-UTF-8 or unparsable content is a ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} cannot be read: {error}") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            # Name the variable but never echo the value: it may be the bot token.
            name = DOTENV_NAME_RE.match(binding.original.string)
            what = f"the line for {name.group(1)}" if name else "this line"
            raise ConfigError(
                f"{path}:{binding.original.line}: cannot parse {what} (expected NAME=value; check the quotes)"
            )
    return text


def _optional(values: Mapping[str, str], name: str) -> str | None:
    value = values.get(name)
    return value.strip() if value and value.strip() else None


def load_settings(env: Mapping[str, str] | None = None, dotenv_path: Path | str | None = ".env") -> Settings:
    values = read_environment(env, dotenv_path)
    token = (values.get("TELEGRAM_BOT_TOKEN") or "").strip()
    base_url = _optional(values, "TELEGRAM_API_BASE_URL")

    number = _optional(values, "EMERGENCY_NUMBER") or "112"
    if not EMERGENCY_NUMBER_RE.match(number):
        raise ConfigError(f"EMERGENCY_NUMBER must be a phone number such as 112 or 911, got {number!r}")

    level = (_optional(values, "LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")

    port_text = _optional(values, "TELEGRAM_WEBHOOK_PORT") or "8443"
    if not port_text.isdecimal() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"TELEGRAM_WEBHOOK_PORT must be a port number, got {port_text!r}")
    webhook_url = _optional(values, "TELEGRAM_WEBHOOK_URL")

    max_chars_text = _optional(values, "MAX_MESSAGE_CHARS") or "2000"
    if not max_chars_text.isdecimal() or not 50 <= int(max_chars_text) <= 10_000:
        raise ConfigError(f"MAX_MESSAGE_CHARS must be a whole number from 50 to 10000, got {max_chars_text!r}")

    attempts_text = _optional(values, "TELEGRAM_STARTUP_ATTEMPTS") or "6"
    if not attempts_text.isdecimal() or not 1 <= int(attempts_text) <= 100:
        raise ConfigError(f"TELEGRAM_STARTUP_ATTEMPTS must be a number from 1 to 100, got {attempts_text!r}")

    data_dir = _optional(values, "BOT_DATA_DIR")  # read by bot.retrieval.read_data_file
    if data_dir and not Path(data_dir).is_dir():
        raise ConfigError(f"BOT_DATA_DIR must be a folder of data files, got {data_dir!r}")
    if data_dir and env is None:
        os.environ.setdefault("BOT_DATA_DIR", data_dir)  # from .env: the data loader reads the environment

    return Settings(
        telegram_token=token or None,
        api_base_url=base_url,
        emergency_number=number,
        log_level=level,
        log_user_text=_is_true(values.get("LOG_USER_TEXT")),
        webhook_url=webhook_url,
        webhook_secret=_optional(values, "TELEGRAM_WEBHOOK_SECRET"),
        webhook_listen=_optional(values, "TELEGRAM_WEBHOOK_LISTEN") or "0.0.0.0",
        webhook_port=int(port_text),
        feedback_db=_optional(values, "FEEDBACK_DB"),
        max_message_chars=int(max_chars_text),
        startup_attempts=int(attempts_text),
    )


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# Logging


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Hide bot tokens (and any configured secret) in a log line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return TOKEN_RE.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then removes tokens from the whole line, tracebacks included."""

    def __init__(self, fmt: str, secrets: tuple[str, ...] = ()) -> None:
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", secrets: tuple[str, ...] = ()) -> None:
    """Log to stderr through the redacting formatter; quiet the HTTP client's per-request lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT, secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO, and Bot API URLs contain the token.
    noisy_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(noisy_level)
