"""Settings from the environment and .env; config faults give one-line errors; logs never show the token."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, RedactingFormatter, load_settings, redact, setup_logging
from tests.test_cli import run_bot

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({}, dotenv_path=tmp_path / ".env")
    assert settings.emergency_number == "112" and settings.log_level == "INFO"
    assert settings.telegram_token is None and settings.max_message_chars == 2000


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nEMERGENCY_NUMBER=911\nLOG_LEVEL=debug\n", encoding="utf-8")
    settings = load_settings({"EMERGENCY_NUMBER": "999"}, dotenv_path=dotenv)
    assert settings.telegram_token == TOKEN
    assert settings.emergency_number == "999"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"EMERGENCY_NUMBER": "call me"}, "EMERGENCY_NUMBER"),
        ({"MAX_MESSAGE_CHARS": "lots"}, "MAX_MESSAGE_CHARS"),
        ({"TELEGRAM_WEBHOOK_PORT": "99999"}, "TELEGRAM_WEBHOOK_PORT"),
    ],
)
def test_invalid_values_name_the_variable(tmp_path: Path, env: dict, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(env, dotenv_path=tmp_path / ".env")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": "   "}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": "not a token"}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "ftp://x"}, "TELEGRAM_API_BASE_URL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "localhost:8081"}, "TELEGRAM_API_BASE_URL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "http://[::1/bot"}, "TELEGRAM_API_BASE_URL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "http://h:99999/bot"}, "TELEGRAM_API_BASE_URL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_URL": "https://[bad/x"}, "TELEGRAM_WEBHOOK_URL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_URL": "http://bot.example.org/x"}, "TELEGRAM_WEBHOOK_URL"),
    ],
)
def test_telegram_settings_are_checked(tmp_path: Path, env: dict, variable: str) -> None:
    settings = load_settings(env, dotenv_path=tmp_path / ".env")
    with pytest.raises(ConfigError, match=variable):
        settings.check_telegram()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TELEGRAM_BOT_TOKEN": ""}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "not a url"}, "TELEGRAM_API_BASE_URL"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "http://[::1/bot"}, "TELEGRAM_API_BASE_URL"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_URL": "https://[bad/x"}, "TELEGRAM_WEBHOOK_URL"),
    ],
)
def test_config_faults_exit_2_with_one_line(tmp_path: Path, env: dict, variable: str) -> None:
    result = run_bot("telegram", env_extra=env, cwd=tmp_path)
    assert result.returncode == 2
    assert variable in result.stderr and result.stderr.strip().count("\n") == 0
    assert TOKEN not in result.stderr


def test_dotenv_that_is_not_utf8_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"EMERGENCY_NUMBER=\xff\xfe\n")
    result = run_bot("ask", "hi", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: .env")
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("line", ['EMERGENCY_NUMBER="911', "EMERGENCY_NUMBER 911"])
def test_malformed_dotenv_line_exits_2_naming_file_and_line(tmp_path: Path, line: str) -> None:
    (tmp_path / ".env").write_text(f"# settings\n{line}\nLOG_LEVEL=INFO\n", encoding="utf-8")
    result = run_bot("ask", "I passed out", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: .env:2:"), result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Call 112" not in result.stdout


def test_malformed_dotenv_line_does_not_echo_the_token(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f'TELEGRAM_BOT_TOKEN="{TOKEN}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN") as caught:
        load_settings({}, dotenv_path=tmp_path / ".env")
    assert TOKEN not in str(caught.value) and ".env:1" in str(caught.value)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_data_dir_must_be_a_folder(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "nothing-here"
    if kind == "file":
        target.write_text("not a folder", encoding="utf-8")
    result = run_bot("ask", "what is ALS", env_extra={"BOT_DATA_DIR": str(target)})
    assert result.returncode == 2 and "BOT_DATA_DIR" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_malformed_webhook_option_exits_2_naming_it(tmp_path: Path) -> None:
    # The Bot API is never contacted: the URL is checked first.
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"}
    result = run_bot("telegram", "--webhook", "https://[bad/x", env_extra=env, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: --webhook")
    assert result.stderr.strip().count("\n") == 0 and TOKEN not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("telegram", "--port", "99999"), ("telegram", "--port=-5"), ("telegram", "--port", "0"),
        ("bench-telegram", "--chats=-1"), ("bench-telegram", "--messages", "0"),
        ("bench-telegram", "--chats=-1", "--messages=-1"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_bot(*args, env_extra={"TELEGRAM_BOT_TOKEN": TOKEN}, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"argument {args[1].split('=')[0]}: expected a whole number" in result.stderr


def test_malformed_data_file_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "synonyms.toml").write_text("[synonyms\nbroken", encoding="utf-8")
    result = run_bot("ask", "what is ALS", env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "synonyms.toml" in result.stderr and "Traceback" not in result.stderr


def test_data_dir_overrides_bundled_texts(tmp_path: Path) -> None:
    import json

    from bot.retrieval import load_toml

    custom = dict(load_toml("messages.toml"), preamble="Custom preamble for this deployment.")
    (tmp_path / "messages.toml").write_text(
        "\n".join(f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in custom.items()),
        encoding="utf-8",
    )
    result = run_bot("ask", "what is ALS", env_extra={"BOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Custom preamble for this deployment.")


def test_redaction_hides_tokens_in_text_urls_and_tracebacks() -> None:
    url = f"https://api.telegram.org/bot{TOKEN}/getUpdates"
    assert TOKEN not in redact(f"HTTP Request: POST {url}")
    formatter = RedactingFormatter("%(message)s", secrets=(TOKEN,))
    try:
        raise RuntimeError(f"failed {url}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "request %s", (url,), exc_info=sys.exc_info())
    line = formatter.format(record)
    assert TOKEN not in line and "<redacted>" in line


def test_setup_logging_quiets_http_client_at_info() -> None:
    setup_logging("INFO", secrets=(TOKEN,))
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    setup_logging("DEBUG", secrets=(TOKEN,))
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.DEBUG
    setup_logging("WARNING")


def test_data_dir_from_dotenv_is_used(tmp_path: Path) -> None:
    import json

    from bot.retrieval import load_toml

    data = tmp_path / "data"
    data.mkdir()
    custom = dict(load_toml("messages.toml"), preamble="Preamble from the .env data folder.")
    (data / "messages.toml").write_text(
        "\n".join(f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in custom.items()),
        encoding="utf-8",
    )
    (tmp_path / ".env").write_text(f"BOT_DATA_DIR={data}\n", encoding="utf-8")
    result = run_bot("ask", "what is ALS", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Preamble from the .env data folder.")
