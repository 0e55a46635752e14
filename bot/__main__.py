"""Command line: `python -m bot console|telegram|ask ...`. Parses, calls the core, maps errors to one line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from bot.chat import DEFAULT_CORPUS_DIR, Chatbot, Conversation, Reply
from bot.config import ConfigError, Settings, load_settings, setup_logging
from bot.corpus import CorpusError
from bot.retrieval import DataFileError

EXIT_USAGE = 2


class CommandError(Exception):
    """A user-facing error that ends the command with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS_DIR, metavar="DIR",
        help="folder of .txt/.md source texts (default: the bundled corpus/)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m bot", description="Muscle weakness information bot (answers only from its source text)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("console", parents=[common], help="chat in the terminal")
    telegram = commands.add_parser("telegram", parents=[common], help="run the Telegram bot")
    telegram.add_argument("--webhook", metavar="URL", help="use a webhook at this https URL instead of long polling")
    ask = commands.add_parser("ask", parents=[common], help="answer questions given as arguments or stdin lines")
    ask.add_argument("--json", action="store_true", help="print one JSON object per question per line")
    ask.add_argument("--session", action="store_true", help="treat all questions as one conversation")
    ask.add_argument("questions", nargs="*", metavar="QUESTION")
    add_eval_parser(commands, common)
    return parser


def add_eval_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`eval [FILE]`: retrieval quality (bot.evaluation); `eval --safety [FILE]`: red flags (bot.safety_eval)."""
    from bot.safety_eval import add_arguments as add_safety_arguments

    evaluate = commands.add_parser("eval", parents=[common], help="measure the bot on a labelled set")
    evaluate.add_argument("--safety", action="store_true", help="evaluate red-flag detection (eval/safety.jsonl)")
    evaluate.add_argument("file", nargs="?", metavar="FILE", help="labelled JSONL set (default: per evaluation)")
    add_safety_arguments(evaluate)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_level, secrets=(settings.telegram_token or "",))
        return COMMANDS[args.command](args, settings)
    except (CorpusError, ConfigError, DataFileError, CommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (`| head`); nothing more to say
        return 0


def load_chatbot(args: argparse.Namespace, settings: Settings) -> Chatbot:
    return Chatbot.from_corpus(args.corpus, emergency_number=settings.emergency_number)


def run_console_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.frontends.console import run_console

    return run_console(load_chatbot(args, settings))


def run_telegram_command(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_token()
    from bot.frontends.telegram import run_telegram

    return run_telegram(load_chatbot(args, settings), settings, webhook_url=args.webhook)


def questions_from(args: argparse.Namespace) -> Iterator[str]:
    if args.questions:
        yield from args.questions
        return
    for line in sys.stdin:
        if line.strip():
            yield line.rstrip("\n")


def reply_to_json(reply: Reply) -> dict:
    """The `ask --json` contract. Keep these keys stable; only ever add new ones."""
    return {
        "question": reply.question,
        "reply": reply.text(),
        "urgent": reply.urgent,
        "red_flags": [flag.id for flag in reply.red_flags],
        "answered": reply.answered,
        "passages": [
            {
                "id": hit.passage.id,
                "section": hit.passage.section,
                "source": hit.passage.source,
                "score": round(hit.score, 4),
                "text": hit.passage.text,
            }
            for hit in (reply.candidates if reply.answered else ())
        ],
        "red_flag_details": [
            {"id": flag.id, "label": flag.label, "evidence": flag.evidence} for flag in reply.red_flags
        ],
        "shown": [hit.passage.id for hit in reply.hits],
    }


def run_ask_command(args: argparse.Namespace, settings: Settings) -> int:
    chatbot = load_chatbot(args, settings)
    conversation = Conversation() if args.session else None
    for question in questions_from(args):
        reply = chatbot.reply(question, conversation if args.session else Conversation())
        if args.json:
            print(json.dumps(reply_to_json(reply), ensure_ascii=False), flush=True)
        else:
            print(reply.text(), end="\n\n", flush=True)
    return 0


def run_eval_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.safety:
        from bot.safety_eval import run_safety_eval

        return run_safety_eval(args)
    try:
        from bot.evaluation import run_eval
    except ModuleNotFoundError as error:
        if error.name != "bot.evaluation":
            raise
        raise CommandError("the retrieval evaluation (bot/evaluation.py) is not available; try `eval --safety`") from None
    return run_eval(args)


COMMANDS = {
    "console": run_console_command,
    "telegram": run_telegram_command,
    "ask": run_ask_command,
    "eval": run_eval_command,
}


if __name__ == "__main__":
    sys.exit(main())
