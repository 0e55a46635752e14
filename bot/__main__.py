"""Command line: `python -m bot console|telegram|ask ...`. Parses, calls the core, maps errors to one line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from typing import NoReturn
from pathlib import Path

from bot.abstention import DEFAULT_MIN_HIT1
from bot.argtypes import corpus_path, fraction, port_number, positive_int
from bot.bench import add_arguments as add_bench_arguments
from bot.chat import DEFAULT_CORPUS_DIR, Chatbot, Conversation, Reply
from bot.config import ConfigError, Settings, load_settings, setup_logging
from bot.corpus import CorpusError
from bot.retrieval import DataFileError

EXIT_USAGE = 2


class CommandError(Exception):
    """A user-facing error that ends the command with exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`error: ...`) with exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    common = OneLineParser(add_help=False)
    common.add_argument(
        "--corpus", type=corpus_path, default=DEFAULT_CORPUS_DIR, metavar="DIR",
        help="folder of .txt/.md source texts (default: the bundled corpus/)",
    )
    parser = OneLineParser(
        prog="python -m bot", description="Muscle weakness information bot (answers only from its source text)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("console", parents=[common], help="chat in the terminal")
    telegram = commands.add_parser("telegram", parents=[common], help="run the Telegram bot")
    telegram.add_argument(
        "--webhook", metavar="URL",
        help="use a webhook at this https URL instead of long polling (default: TELEGRAM_WEBHOOK_URL)",
    )
    telegram.add_argument("--listen", metavar="ADDRESS", help="webhook: address to listen on (default 0.0.0.0)")
    telegram.add_argument("--port", type=port_number, metavar="PORT", help="webhook: port to listen on (default 8443)")
    bench_telegram = commands.add_parser(
        "bench-telegram", parents=[common],
        help="replies/s of the Telegram front end against the fake Bot API (run from the repository root)",
    )
    bench_telegram.add_argument("--chats", type=positive_int, default=100, help="chats sending at once (default 100)")
    bench_telegram.add_argument("--messages", type=positive_int, default=3, help="questions per chat (default 3)")
    bench_telegram.add_argument(
        "--limiter", choices=("sliding", "ptb"), default="sliding",
        help="the bot's flood-control limiter, or PTB's AIORateLimiter for comparison",
    )
    ask = commands.add_parser("ask", parents=[common], help="answer questions given as arguments or stdin lines")
    ask.add_argument("--json", action="store_true", help="print one JSON object per question per line")
    ask.add_argument("--session", action="store_true", help="treat all questions as one conversation")
    ask.add_argument("questions", nargs="*", metavar="QUESTION")
    commands.add_parser("index", parents=[common], help="build (or refresh) the cached index of a corpus")
    report = commands.add_parser("report", parents=[common], help="most frequent declined and 👎-rated questions")
    report.add_argument("--limit", type=int, default=20, metavar="N", help="rows per list (default 20)")
    bench = commands.add_parser("bench", parents=[common], help="measure speed and memory against bm25s")
    add_bench_arguments(bench)
    add_eval_parser(commands, common)
    calibrate = commands.add_parser(
        "calibrate", parents=[common], help="fit the answer-or-decline model on the dev split of a labelled set"
    )
    calibrate.add_argument("file", nargs="?", type=Path, metavar="FILE", help="labelled JSONL set (default: eval/questions.jsonl)")
    calibrate.add_argument(
        "--output", metavar="TOML", help="where to write the models (default: $BOT_DATA_DIR/abstention.toml, else bot/data/)"
    )
    calibrate.add_argument(
        "--min-hit1", type=fraction, default=DEFAULT_MIN_HIT1, metavar="X",
        help=f"pick the threshold that declines the most off-topic questions while cross-validated hit@1 stays"
        f" at X or more (default {DEFAULT_MIN_HIT1}; when no threshold reaches X, the best hit@1 + abstention)",
    )
    return parser


def add_eval_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`eval [FILE]`: retrieval quality (bot.evaluation); `eval --safety [FILE]`: red flags (bot.safety_eval)."""
    from bot.safety_eval import add_arguments as add_safety_arguments

    evaluate = commands.add_parser("eval", parents=[common], help="measure the bot on a labelled set")
    evaluate.add_argument("--safety", action="store_true", help="evaluate red-flag detection (eval/safety.jsonl)")
    evaluate.add_argument("file", nargs="?", type=Path, metavar="FILE", help="labelled JSONL set (default: per evaluation)")
    add_safety_arguments(evaluate)  # --split, --lexicon, --min-sensitivity, ...
    quality = evaluate.add_argument_group("answer quality (without --safety)")
    for option, label in (("hit1", "hit@1"), ("hit3", "hit@3"), ("mrr", "MRR"), ("abstention", "off-topic abstention")):
        quality.add_argument(f"--min-{option}", type=fraction, metavar="X", help=f"exit 1 when {label} is below X")
    quality.add_argument("--compare-bm25", action="store_true", help="rank the same questions with bm25s too")


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
    feedback = None
    if settings.feedback_db:
        from bot.feedback import FeedbackError, FeedbackStore

        try:
            feedback = FeedbackStore(settings.feedback_db)
        except FeedbackError as error:
            raise CommandError(str(error)) from None
    return Chatbot.from_corpus(
        args.corpus, emergency_number=settings.emergency_number, max_message_chars=settings.max_message_chars,
        feedback=feedback,
    )


def run_console_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.frontends.console import run_console

    return run_console(load_chatbot(args, settings))


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # main() turns it into exit code 0


def run_telegram_command(args: argparse.Namespace, settings: Settings) -> int:
    signal.signal(signal.SIGTERM, _stop)  # a SIGTERM while loading is a clean stop too
    settings.check_telegram()
    from bot.frontends.telegram import BotAPIUnreachable, WebhookListenError, run_telegram

    try:
        return run_telegram(
            load_chatbot(args, settings), settings, webhook_url=args.webhook, listen=args.listen, port=args.port
        )
    except (BotAPIUnreachable, WebhookListenError) as error:
        raise CommandError(str(error)) from None


def run_bench_telegram_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.frontends.telegram_bench import FakeUnavailable, run_benchmark

    try:
        result = run_benchmark(load_chatbot(args, settings), args.chats, args.messages, args.limiter)
    except FakeUnavailable as error:
        raise CommandError(str(error)) from None
    print(result.line())
    return 0 if result.lost == 0 else 1


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
        "explanation": reply.explanation(),
        "choices": [{"id": hit.passage.id, "section": hit.passage.section} for hit in reply.choices],
        "suggestions": list(reply.suggestions),
        "lacking": reply.lacking,
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


def run_index_command(args: argparse.Namespace, settings: Settings) -> int:
    """Build the index cache with a progress bar (shown on a terminal), then say where it is."""
    from tqdm import tqdm

    from bot.index_cache import default_cache_root, load_or_build_index

    bar: tqdm | None = None

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="passages", desc=stage, disable=None, file=sys.stderr)
        bar.update(done - bar.n)

    started = time.perf_counter()
    state = load_or_build_index(args.corpus, progress=progress)
    if bar is not None:
        bar.close()
    action = "built" if bar is not None else "already up to date"
    print(
        f"index {action}: {len(state.passages)} passages from {args.corpus} "
        f"in {time.perf_counter() - started:.1f} s (cache: {default_cache_root()})"
    )
    return 0


def run_eval_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.safety:
        from bot.safety_eval import run_safety_eval

        return run_safety_eval(args)
    from bot.evaluation import EvalFileError, run_eval

    try:
        return run_eval(args)
    except EvalFileError as error:
        raise CommandError(str(error)) from None


def run_report_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.feedback import FeedbackError, print_report

    if not settings.feedback_db:
        raise CommandError("FEEDBACK_DB is not set: there is no feedback to report")
    try:
        return print_report(settings.feedback_db, args.limit)
    except FeedbackError as error:
        raise CommandError(str(error)) from None


def run_bench_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.bench import run_bench

    return run_bench(args)


def run_calibrate_command(args: argparse.Namespace, settings: Settings) -> int:
    from bot.calibration import run_calibrate
    from bot.evaluation import EvalFileError

    try:
        return run_calibrate(args)
    except EvalFileError as error:
        raise CommandError(str(error)) from None


COMMANDS = {
    "bench": run_bench_command,
    "calibrate": run_calibrate_command,
    "index": run_index_command,
    "console": run_console_command,
    "telegram": run_telegram_command,
    "ask": run_ask_command,
    "bench-telegram": run_bench_telegram_command,
    "eval": run_eval_command,
    "report": run_report_command,
}


if __name__ == "__main__":
    sys.exit(main())
