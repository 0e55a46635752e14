"""Interactive chat in the terminal: plain text, line editing, /help and /quit."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.chat import Chatbot, Conversation

PROMPT = "you> "
QUIT_COMMANDS = ("/quit", "/exit", "/q")


def _enable_line_editing() -> None:
    try:
        import readline  # noqa: F401  (importing it gives input() history and editing)
    except ImportError:  # not available on every platform
        pass


def run_console(chatbot: Chatbot, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Chat until /quit, end of input or Ctrl-C. Returns the exit code (0)."""
    interactive = stdin.isatty()
    if interactive:
        _enable_line_editing()
    conversation = Conversation()
    print("Muscle weakness information bot. Type /help for help, /quit to leave.", file=stdout)
    print(chatbot.messages["preamble"], file=stdout, flush=True)
    while True:
        try:
            line = input(PROMPT) if interactive and stdin is sys.stdin else _read_line(stdin)
        except (EOFError, KeyboardInterrupt):
            print(file=stdout)
            return 0
        command = line.strip().lower()
        if command in QUIT_COMMANDS:
            return 0
        if command in ("/help", "/start", "help"):
            text = chatbot.help_text()
        else:
            text = chatbot.reply(line, conversation).text()
        print(f"\n{text}\n", file=stdout, flush=True)


def _read_line(stdin: TextIO) -> str:
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
