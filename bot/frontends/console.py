"""Interactive chat in the terminal: plain text, line editing, /help, /quit, numbered suggestions,
"more" (the next-best passage) and /why (how the last answer was matched)."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.chat import Chatbot, Conversation

PROMPT = "you> "
QUIT_COMMANDS = ("/quit", "/exit", "/q")
MORE_COMMANDS = ("more", "/more")
WHY_COMMANDS = ("/why", "why?")


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
    suggestions: list[str] = []
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
        elif command in MORE_COMMANDS:
            text = chatbot.more(conversation).text()
        elif command in WHY_COMMANDS:
            text = explain(conversation)
        else:
            if command.isdecimal() and suggestions and 1 <= int(command) <= len(suggestions):
                title = suggestions[int(command) - 1]
                print(f"({title})", file=stdout)
                reply = chatbot.section_reply(title, conversation)
            else:
                reply = chatbot.reply(line, conversation)
            suggestions = list(reply.suggestions)
            text = reply.text()
            if suggestions and not reply.choices:
                numbered = "\n".join(f"  {n}. {title}" for n, title in enumerate(suggestions, 1))
                text += f"\n\nRelated (type a number): \n{numbered}"
            if reply.choices:
                text += "\n\n(type the number of the topic you mean)"
            if reply.answered:
                text += "\n(type “more” for the next-best passage, /why to see how this was matched)"
        print(f"\n{text}\n", file=stdout, flush=True)


def explain(conversation: Conversation) -> str:
    """/why: the words the last answer matched, with typo corrections and synonym expansions."""
    reply = conversation.last_reply
    if reply is None or reply.analysis is None:
        return "Nothing to explain yet: ask a question first."
    info = reply.explanation()
    top = reply.hits[0] if reply.hits else None
    lines = [f"How “{reply.question[:80]}” was matched:"]
    if top is not None:
        lines.append(f"- best passage: {top.passage.id} in “{top.passage.section}” (score {top.score:.3f})")
    elif not reply.choices:
        lines.append("- no passage was close enough, so the question was declined")
    corrections = info["corrections"]
    lines.append("- corrected: " + (", ".join(f"{a} → {b}" for a, b in corrections.items()) or "nothing"))
    lines.append("- lay words read as: " + (", ".join(info["expansions"]) or "none"))
    lines.append("- words in common (stems): " + (", ".join(info["matched_terms"]) or "none"))
    if info["similar_question"]:
        similar = info["similar_question"][:80]
        lines.append(f"- close to the known question “{similar}” (similarity {info['similar_question_score']:.2f})")
    if info["classifier_score"]:
        lines.append(f"- the classifiers trained on known questions add {info['classifier_score']:+.2f} to its score")
    return "\n".join(lines)


def _read_line(stdin: TextIO) -> str:
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
