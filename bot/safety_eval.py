"""`python -m bot eval --safety [FILE]`: how well red-flag detection does on a labelled set.

The set is JSON Lines, one message per line:

    {"text": "...", "urgent": true, "flags": ["speech"], "category": "typo", "note": "...", "split": "dev"}

`text` and `urgent` are required; `flags` (the red-flag ids the message shows; empty for
non-urgent messages), `category`, `note` and `split` ("dev" or "heldout") are optional.

Reported: sensitivity (urgent messages escalated) and specificity (non-urgent messages not
escalated), overall, per split, per category and per flag; then every miss (an urgent message not
escalated, or escalated without one of its labelled flags), every false alarm (a non-urgent
message escalated) and every extra flag on an urgent message. The command exits with 1 when a
threshold is not met (by default: any miss at all), and with 2 when the set or the lexicon cannot
be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bot.argtypes import fraction
from bot.retrieval import DataFileError
from bot.safety import Lexicon, default_lexicon, detect_red_flags, load_lexicon

DEFAULT_SAFETY_SET = Path(__file__).resolve().parent.parent / "eval" / "safety.jsonl"
SPLITS = ("dev", "heldout")
KNOWN_KEYS = {"text", "urgent", "flags", "category", "note", "split"}
EXIT_OK, EXIT_BELOW_THRESHOLD = 0, 1


@dataclass(frozen=True)
class Case:
    line: int
    text: str
    urgent: bool
    flags: frozenset[str] = frozenset()
    category: str = "uncategorised"
    note: str = ""
    split: str = "dev"


@dataclass(frozen=True)
class Outcome:
    case: Case
    detected: tuple[str, ...]

    @property
    def escalated(self) -> bool:
        return bool(self.detected)

    @property
    def missing_flags(self) -> frozenset[str]:
        return self.case.flags - set(self.detected)

    @property
    def extra_flags(self) -> frozenset[str]:
        return frozenset(self.detected) - self.case.flags if self.case.urgent else frozenset()

    @property
    def missed(self) -> bool:
        """An urgent message not escalated, or escalated without a flag it shows."""
        return self.case.urgent and (not self.escalated or bool(self.missing_flags))

    @property
    def false_alarm(self) -> bool:
        return not self.case.urgent and self.escalated


@dataclass
class Rate:
    """Sensitivity or specificity: hits out of total; None when there is nothing to measure."""

    hits: int = 0
    total: int = 0

    def add(self, hit: bool) -> None:
        self.hits += int(hit)
        self.total += 1

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    def __str__(self) -> str:
        if not self.total:
            return "    n/a      "
        return f"{self.value:6.1%} {self.hits:>3}/{self.total:<3}"


@dataclass
class Scores:
    sensitivity: Rate = field(default_factory=Rate)
    specificity: Rate = field(default_factory=Rate)

    def add(self, outcome: Outcome) -> None:
        if outcome.case.urgent:
            self.sensitivity.add(not outcome.missed)
        else:
            self.specificity.add(not outcome.false_alarm)


@dataclass
class Report:
    outcomes: list[Outcome]
    overall: Scores
    splits: dict[str, Scores]
    categories: dict[str, Scores]
    flags: dict[str, Scores]
    escalation: Scores  # message level only: was an urgent message escalated at all?

    @property
    def misses(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.missed]

    @property
    def false_alarms(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.false_alarm]

    @property
    def extra_flags(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.urgent and o.extra_flags]


def load_cases(path: Path) -> list[Case]:
    """Read a labelled set; any malformed line is a DataFileError naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataFileError(f"labelled set {path} is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(f"labelled set {path} cannot be read: {error}") from None
    cases = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"labelled set {path}, line {number}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as error:
            raise DataFileError(f"{where}: not valid JSON: {error}") from None
        cases.append(_case(row, number, where))
    if not cases:
        raise DataFileError(f"labelled set {path} has no messages")
    return cases


def _case(row: object, number: int, where: str) -> Case:
    if not isinstance(row, dict):
        raise DataFileError(f"{where}: must be a JSON object")
    unknown = set(row) - KNOWN_KEYS
    if unknown:
        raise DataFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    text, urgent = row.get("text"), row.get("urgent")
    if not isinstance(text, str) or not text.strip():
        raise DataFileError(f"{where}: 'text' must be a non-empty string")
    if not isinstance(urgent, bool):
        raise DataFileError(f"{where}: 'urgent' must be true or false")
    flags = row.get("flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) and f for f in flags):
        raise DataFileError(f"{where}: 'flags' must be a list of flag ids")
    if flags and not urgent:
        raise DataFileError(f"{where}: a non-urgent message cannot have flags")
    for key in ("category", "note", "split"):
        if key in row and not isinstance(row[key], str):
            raise DataFileError(f"{where}: {key!r} must be a string")
    split = row.get("split", "dev")
    if split not in SPLITS:
        raise DataFileError(f"{where}: 'split' must be one of {', '.join(SPLITS)}")
    return Case(
        line=number, text=text, urgent=urgent, flags=frozenset(flags),
        category=row.get("category") or "uncategorised", note=row.get("note", ""), split=split,
    )


def evaluate(cases: Iterable[Case], lexicon: Lexicon) -> Report:
    outcomes = [Outcome(case, tuple(f.id for f in detect_red_flags(case.text, lexicon))) for case in cases]
    overall, escalation = Scores(), Scores()
    splits: dict[str, Scores] = defaultdict(Scores)
    categories: dict[str, Scores] = defaultdict(Scores)
    flags: dict[str, Scores] = {rule.id: Scores() for rule in lexicon.flags}
    for outcome in outcomes:
        overall.add(outcome)
        splits[outcome.case.split].add(outcome)
        categories[outcome.case.category].add(outcome)
        if outcome.case.urgent:
            escalation.sensitivity.add(outcome.escalated)
        else:
            escalation.specificity.add(not outcome.escalated)
        for flag_id in set(flags) | outcome.case.flags:
            scores = flags.setdefault(flag_id, Scores())
            if flag_id in outcome.case.flags:
                scores.sensitivity.add(flag_id in outcome.detected)
            else:
                scores.specificity.add(flag_id not in outcome.detected)
    return Report(
        outcomes=outcomes,
        overall=overall,
        splits={name: splits[name] for name in SPLITS if name in splits},
        categories=dict(sorted(categories.items())),
        flags=flags,
        escalation=escalation,
    )


def _table(title: str, rows: dict[str, Scores], out: TextIO) -> None:
    width = max([len(title), *(len(name) for name in rows)])
    print(f"\n{title:<{width}}  sensitivity     specificity", file=out)
    for name, scores in rows.items():
        print(f"{name:<{width}}  {scores.sensitivity}  {scores.specificity}", file=out)


def _describe(outcome: Outcome) -> str:
    case = outcome.case
    found = ", ".join(outcome.detected) or "nothing"
    labelled = ", ".join(sorted(case.flags)) or "none"
    where = f"line {case.line} [{case.split}/{case.category}]"
    return f"  {where} {case.text!r}\n      labelled: {labelled}; detected: {found}" + (
        f"; note: {case.note}" if case.note else ""
    )


def print_report(report: Report, source: str, out: TextIO = sys.stdout) -> None:
    overall = report.overall
    print(f"Safety evaluation of {source}: {len(report.outcomes)} messages, "
          f"{overall.sensitivity.total} urgent, {overall.specificity.total} not urgent", file=out)
    print("Sensitivity: urgent messages escalated with every labelled flag; "
          "specificity: non-urgent messages not escalated.", file=out)
    print(f"\nOverall sensitivity {overall.sensitivity}   specificity {overall.specificity}", file=out)
    print(f"Escalated at all     {report.escalation.sensitivity}   (any flag, message level)", file=out)
    _table("split", report.splits, out)
    _table("category", report.categories, out)
    _table("flag", report.flags, out)
    print("  (per flag: sensitivity over messages labelled with it; specificity over all others)", file=out)
    sections = [
        ("Misses (urgent, not escalated or a labelled flag missing)", report.misses),
        ("False alarms (not urgent, escalated)", report.false_alarms),
        ("Extra flags on urgent messages (escalated correctly, named more than labelled)", report.extra_flags),
    ]
    for title, outcomes in sections:
        print(f"\n{title}: {len(outcomes)}", file=out)
        for outcome in outcomes:
            print(_describe(outcome), file=out)


def failures(report: Report, min_sensitivity: float, min_specificity: float, min_flag_sensitivity: float) -> list[str]:
    """Which thresholds the report does not meet, as lines to print."""
    problems = []
    sensitivity = report.overall.sensitivity.value
    specificity = report.overall.specificity.value
    if sensitivity is not None and sensitivity < min_sensitivity:
        problems.append(f"sensitivity {sensitivity:.1%} is below {min_sensitivity:.1%}")
    if specificity is not None and specificity < min_specificity:
        problems.append(f"specificity {specificity:.1%} is below {min_specificity:.1%}")
    for flag_id, scores in report.flags.items():
        value = scores.sensitivity.value
        if value is not None and value < min_flag_sensitivity:
            problems.append(f"sensitivity for flag {flag_id!r} {value:.1%} is below {min_flag_sensitivity:.1%}")
    return problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `eval --safety` (the FILE positional is shared with the retrieval eval)."""
    group = parser.add_argument_group("safety evaluation (with --safety)")
    group.add_argument("--lexicon", type=Path, metavar="TOML", help="red-flag lexicon (default: the bundled one)")
    group.add_argument("--split", choices=(*SPLITS, "all"), default="all", help="evaluate only one split")
    group.add_argument("--min-sensitivity", type=fraction, default=1.0, metavar="X",
                       help="exit 1 when overall sensitivity is below X (default 1.0; 0.95 or 95%%)")
    group.add_argument("--min-specificity", type=fraction, default=0.0, metavar="X",
                       help="exit 1 when overall specificity is below X (default 0)")
    group.add_argument("--min-flag-sensitivity", type=fraction, default=1.0, metavar="X",
                       help="exit 1 when any flag's sensitivity is below X (default 1.0)")
    group.add_argument("--quiet", action="store_true", help="print only the summary and the failures")


def run_safety_eval(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    path = Path(args.file) if getattr(args, "file", None) else DEFAULT_SAFETY_SET
    lexicon_path = getattr(args, "lexicon", None)
    lexicon = load_lexicon(lexicon_path) if lexicon_path else default_lexicon()
    cases = load_cases(path)
    split = getattr(args, "split", "all")
    if split != "all":
        cases = [case for case in cases if case.split == split]
        if not cases:
            raise DataFileError(f"labelled set {path} has no messages in split {split!r}")
    report = evaluate(cases, lexicon)
    if getattr(args, "quiet", False):
        overall = report.overall
        print(f"safety: sensitivity {overall.sensitivity}  specificity {overall.specificity}  "
              f"({len(report.misses)} misses, {len(report.false_alarms)} false alarms)", file=out)
        for outcome in report.misses:
            print("MISS" + _describe(outcome), file=out)
    else:
        print_report(report, str(path), out)
    problems = failures(
        report,
        getattr(args, "min_sensitivity", 1.0),
        getattr(args, "min_specificity", 0.0),
        getattr(args, "min_flag_sensitivity", 1.0),
    )
    for problem in problems:
        print(f"FAIL: {problem}", file=out)
    return EXIT_BELOW_THRESHOLD if problems else EXIT_OK
