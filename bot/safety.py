"""Red-flag detection, the safety preamble and the urgent-care escalation.

Detection works clause by clause on folded text. A flag matches when one of its phrases (or all
parts of one of its combinations) occurs in a clause, typos tolerated with rapidfuzz, and the
match is not inside the scope of a negation (NegEx: a trigger word shortly before or after, with
no scope terminator such as "but" in between). Stated temperatures are read with their unit and
compared with the threshold. All phrases live in ``bot/data/red_flags.toml``.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from rapidfuzz import fuzz, process

from bot.retrieval import DataFileError, load_toml
from bot.text import BARE_NEGATIONS_RE, expand_contractions, fold, words

FEVER_FLAG = "fever"
# An operator can point the bot at another lexicon file (its errors name that file).
LEXICON_ENV_VAR = "RED_FLAGS_FILE"
DEFAULT_EMERGENCY_NUMBER = "112"

# What one position of a lexicon phrase may hold (bot.text.words yields only such words).
LEXICON_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# A phrase position "#N" matches any whole number of at least N; "#<N" any below N.
NUMBER_TOKEN_RE = re.compile(r"#(<?)(\d{1,6})")
# Clauses end at sentence punctuation, commas (but not decimal commas), brackets and dashes.
CLAUSE_SPLIT_RE = re.compile(r"[!?;:\n()\[\]]+|[.,](?!\d)|(?<!\d)[.,]|\s[-–—]+\s")
# How many words beyond the negation window to look for pseudo-negations and terminators.
NEGATION_MARGIN = 12
# A combination tries at most this many matches of each of its parts (see combination_evidence).
MAX_SPANS_PER_PART = 4
# "can t", "didn t": a negative contraction dictated or typed with a space for the apostrophe.
SPACED_NEGATION_RE = re.compile(BARE_NEGATIONS_RE.pattern.replace("nt\\b", "n t\\b"))
# Dictation splits a long word into at most this many pieces ("un con scious").
MAX_REJOINED_PIECES = 3
# Sentences end at . ! ? ; and new lines (not at a decimal point).
SENTENCE_SPLIT_RE = re.compile(r"[!?;\n]+|\.(?!\d)|(?<!\d)\.")
# A number that may be a temperature, with an optional unit right after it.
TEMPERATURE_RE = re.compile(
    r"(?<![\d.,])(?P<value>\d{2,3}(?:[.,]\d{1,2})?)\s*"
    r"(?P<unit>°\s*[cf]?|º\s*[cf]?|degrees?\s*(?:celsius|centigrade|fahrenheit|c|f)?|deg\s*[cf]?"
    r"|celsius|centigrade|fahrenheit|c|f)?(?![a-z\d])"
)
CELSIUS_RANGE = (34.0, 45.0)
FAHRENHEIT_RANGE = (93.0, 113.0)
# What may stand between a number and the context word after it: "39 temperature", "39 on the thermometer".
BEFORE_CONTEXT_GAP_RE = re.compile(r"\s*(?:(?:on|in|by|per)\s+)?(?:(?:the|my|a|his|her)\s+)?")
# Added to a reading after "above", "over", …: "fever above 38.5" is above 38.5.
ABOVE_MARGIN = 0.05
# How far after a context word ("temp", "fever") a bare number is read as a temperature.
CONTEXT_REACH_CHARS = 30


@dataclass(frozen=True)
class TokenSpec:
    """One position of a phrase: alternative words, each exact or a prefix ("numb*"), or "#N" for
    any whole number of at least N ("took #10 pills"), "#<N" for one below N ("sats #<92")."""

    alternatives: tuple[tuple[str, bool], ...]

    @classmethod
    def parse(cls, raw: str) -> TokenSpec:
        alternatives = []
        for alternative in raw.split("|"):
            if NUMBER_TOKEN_RE.fullmatch(alternative):
                alternatives.append((alternative, False))
                continue
            is_prefix = alternative.endswith("*")
            text = alternative.rstrip("*")
            if not text:
                raise ValueError(f"empty alternative in {raw!r}")
            if not LEXICON_WORD_RE.fullmatch(text):
                raise ValueError(f"{text!r} in {raw!r} is not a word (letters and digits only) and could never match")
            alternatives.append((text, is_prefix))
        return cls(tuple(alternatives))


Phrase = tuple[TokenSpec, ...]


@dataclass(frozen=True)
class FlagRule:
    id: str
    label: str
    phrases: tuple[Phrase, ...]
    combinations: tuple[tuple[Phrase, ...], ...] = ()
    # Like `combinations`, but the parts may sit in different clauses of one sentence
    # ("weak left arm, came on suddenly"); a negation still reaches only within its clause.
    sentence_combinations: tuple[tuple[Phrase, ...], ...] = ()
    unless_before: tuple[tuple[str, ...], ...] = ()
    unless_after: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class NegationRules:
    window: int
    before: tuple[tuple[str, ...], ...]
    after: tuple[tuple[str, ...], ...]
    pseudo: tuple[tuple[str, ...], ...]
    terminators: tuple[tuple[str, ...], ...]
    # Words that may not sit in a phrase's gap right after one of its negation words: "not breathing"
    # must not match "not having trouble breathing".
    gap_blockers: tuple[tuple[str, ...], ...] = ()
    # Phrases saying a symptom has passed ("but that's all cleared up"): they negate every match
    # before them in the clause, however far, unless a terminator comes between.
    resolved: tuple[tuple[str, ...], ...] = ()

    @cached_property
    def single_word_triggers(self) -> frozenset[str]:
        return frozenset(option[0] for option in self.before if len(option) == 1)

    @cached_property
    def blocker_words(self) -> frozenset[str]:
        return frozenset(word for option in self.gap_blockers for word in option)


def _words_regex(phrases: Iterable[str]) -> re.Pattern[str] | None:
    """A regex for folded text matching any of these phrases ("temp*" matches "temperature")."""
    options = []
    for phrase in phrases:
        parts = [re.escape(token.rstrip("*")) + (r"\w*" if token.endswith("*") else "") for token in phrase.split()]
        options.append(r"\s+".join(parts))
    if not options:
        return None
    return re.compile(r"\b(?:" + "|".join(sorted(options, key=len, reverse=True)) + r")\b")


def _alternation(phrases: Iterable[str]) -> str:
    """Regex text matching any of these literal phrases, longest first, any whitespace between words."""
    return "|".join(r"\s+".join(map(re.escape, p.split())) for p in sorted(phrases, key=len, reverse=True))


@dataclass(frozen=True)
class TemperatureRules:
    """Words that make a bare number a body temperature, or show that it is not one."""

    context: tuple[str, ...] = ("temp*", "fever*", "febrile", "thermometer", "pyrexia")
    ambient: tuple[str, ...] = ()
    not_units: tuple[str, ...] = ()
    # Abbreviations whose period does not end a sentence ("temp. 39").
    abbreviations: tuple[str, ...] = ()
    # Numbers in words, read as digits before looking for temperatures ("forty" → "40"), and the
    # words that join a number to its decimal ("38 point 9") or add a half ("39 and a half").
    spoken_numbers: tuple[tuple[str, str], ...] = ()
    decimal_words: tuple[str, ...] = ()
    half_words: tuple[str, ...] = ()
    # Words right before a number that make it a lower bound: "above 38.5", "over 101.3".
    above: tuple[str, ...] = ()
    # Words shortly before a number that measure something else: "blood sugar is 104".
    measures: tuple[str, ...] = ()
    # Words after which a bare whole number from 100 to 110 is read as °F: "she's 103".
    fahrenheit_after: tuple[str, ...] = ()

    @cached_property
    def measures_re(self) -> re.Pattern[str] | None:
        """A measure word right before the number, with at most a linking word: "sugar is 104", "pulse: 101"."""
        if not self.measures:
            return None
        return re.compile(rf"\b(?:{_alternation(self.measures)})\b\s*(?:(?:is|was|of|at|now)\s*)?[:=]?\s*$")

    @cached_property
    def fahrenheit_after_re(self) -> re.Pattern[str] | None:
        return re.compile(rf"(?:^|\s)(?:{_alternation(self.fahrenheit_after)})\s*$") if self.fahrenheit_after else None

    @cached_property
    def above_re(self) -> re.Pattern[str] | None:
        return re.compile(rf"\b(?:{_alternation(self.above)})\s*$") if self.above else None

    @cached_property
    def spoken_number_rules(self) -> tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]:
        """(regex, replacement) pairs that turn spoken numbers into digits, in order."""
        rules: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = []
        if self.spoken_numbers:
            digits = dict(self.spoken_numbers)  # _alternation tries "forty one" before "forty"
            pattern = re.compile(rf"\b(?:{_alternation(digits)})\b")
            rules.append((pattern, lambda match: digits[" ".join(match.group(0).split())]))
        if self.decimal_words:
            rules.append((re.compile(rf"\b(\d{{2,3}})\s+(?:{_alternation(self.decimal_words)})\s+(\d)\b"), r"\1.\2"))
        if self.half_words:
            rules.append((re.compile(rf"\b(\d{{2,3}})\s+(?:{_alternation(self.half_words)})\b"), r"\1.5"))
        return tuple(rules)

    @cached_property
    def abbreviation_re(self) -> re.Pattern[str] | None:
        return re.compile(rf"\b({_alternation(self.abbreviations)})\.") if self.abbreviations else None

    @property
    def context_re(self) -> re.Pattern[str] | None:
        return _words_regex(self.context)

    @property
    def ambient_re(self) -> re.Pattern[str] | None:
        return _words_regex(self.ambient)

    @property
    def not_units_re(self) -> re.Pattern[str] | None:
        return _words_regex(self.not_units)


@dataclass(frozen=True)
class RedFlag:
    """A recognised red flag: its id, its label for people, and the words that matched."""

    id: str
    label: str
    evidence: str


Alternative = tuple[str, bool]


def _number_fits(value: int, spec: str) -> bool:
    """Does a number fill a "#N" (at least N) or "#<N" (below N) phrase position?"""
    below, bound = NUMBER_TOKEN_RE.fullmatch(spec).groups()  # type: ignore[union-attr]
    return value < int(bound) if below else value >= int(bound)


class WordMatcher:
    """Which lexicon words a message word matches: exactly, by prefix, or as a typo (rapidfuzz)."""

    def __init__(
        self,
        alternatives: set[Alternative],
        fuzzy_min_length: int,
        fuzzy_cutoff: float,
        never_typos: frozenset[str] = frozenset(),
    ) -> None:
        self.number_tokens = sorted(
            text for text, prefix in alternatives if not prefix and NUMBER_TOKEN_RE.fullmatch(text)
        )
        self.exact = frozenset(
            text for text, prefix in alternatives if not prefix and not NUMBER_TOKEN_RE.fullmatch(text)
        )
        self.prefixes_by_length: dict[int, frozenset[str]] = {}
        for text, prefix in alternatives:
            if prefix:
                self.prefixes_by_length.setdefault(len(text), set()).add(text)  # type: ignore[union-attr]
        self.prefixes_by_length = {n: frozenset(p) for n, p in self.prefixes_by_length.items()}
        # Typos keep their first letter (a common spell-checking assumption): "sitting" is not "fitting".
        self.fuzzy_exact: dict[str, list[str]] = {}
        for text in sorted(self.exact):
            if len(text) >= fuzzy_min_length:
                self.fuzzy_exact.setdefault(text[0], []).append(text)
        self.fuzzy_prefixes: dict[str, list[str]] = {}
        for length, group in sorted(self.prefixes_by_length.items()):
            if length >= fuzzy_min_length:
                for text in sorted(group):
                    self.fuzzy_prefixes.setdefault(text[0], []).append(text)
        self.fuzzy_min_length = fuzzy_min_length
        self.fuzzy_cutoff = fuzzy_cutoff
        self.never_typos = never_typos
        self._cache: dict[str, frozenset[Alternative]] = {}

    def known(self, token: str) -> set[Alternative]:
        found: set[Alternative] = {(token, False)} if token in self.exact else set()
        if self.number_tokens and token.isdecimal() and len(token) <= 6:
            found.update((spec, False) for spec in self.number_tokens if _number_fits(int(token), spec))
        for length, group in self.prefixes_by_length.items():
            if len(token) >= length and token[:length] in group:
                found.add((token[:length], True))
        return found

    def matches(self, token: str) -> frozenset[Alternative]:
        cached = self._cache.get(token)
        if cached is None:
            known = self.known(token)
            # A word that is itself in the lexicon is no typo; one that only starts like a prefix
            # ("brethe": "breth*") may still be a typo of a whole word ("breathe").
            cached = frozenset(known if token in self.exact else known | self._typos(token))
            if len(self._cache) < 100_000:
                self._cache[token] = cached
        return cached

    def _typos(self, token: str) -> set[Alternative]:
        """Lexicon words this unknown word is a misspelling of; short words and listed words never are."""
        if len(token) < self.fuzzy_min_length - 1 or token in self.never_typos or token.isdecimal():
            return set()
        found: set[Alternative] = {
            (text, False)
            for text, _, _ in process.extract(
                token, self.fuzzy_exact.get(token[0], ()), scorer=fuzz.ratio,
                score_cutoff=self.fuzzy_cutoff, limit=None,
            )
        }
        for text in self.fuzzy_prefixes.get(token[0], ()):
            starts = (token[: len(text)], token[: len(text) + 1])
            if max(fuzz.ratio(start, text) for start in starts) >= self.fuzzy_cutoff:
                found.add((text, True))
        return found


@dataclass(frozen=True)
class Lexicon:
    flags: tuple[FlagRule, ...]
    negation: NegationRules
    max_gap: int = 3
    fuzzy_min_length: int = 6
    fuzzy_cutoff: float = 80.0
    fever_threshold_celsius: float = 38.5
    temperature: TemperatureRules = field(default_factory=lambda: TemperatureRules())
    never_typos: frozenset[str] = frozenset()
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def labels(self) -> dict[str, str]:
        return {rule.id: rule.label for rule in self.flags}

    def all_phrases(self) -> list[Phrase]:
        return [
            phrase
            for rule in self.flags
            for phrase in (
                *rule.phrases,
                *(part for combo in (*rule.combinations, *rule.sentence_combinations) for part in combo),
            )
        ]

    @property
    def words(self) -> WordMatcher:
        if "words" not in self._index:
            alternatives = {alt for phrase in self.all_phrases() for spec in phrase for alt in spec.alternatives}
            self._index["words"] = WordMatcher(
                alternatives, int(self.fuzzy_min_length), self.fuzzy_cutoff, self.never_typos
            )
            specs_by_alternative: dict[Alternative, set[TokenSpec]] = {}
            for phrase in self.all_phrases():
                for spec in phrase:
                    for alt in spec.alternatives:
                        specs_by_alternative.setdefault(alt, set()).add(spec)
            self._index["specs"] = specs_by_alternative
        return self._index["words"]

    def negation_index(self, kind: str) -> dict[str, list[tuple[str, ...]]]:
        """Negation word sequences of one kind ("before", "after", "pseudo", "terminators") by first word."""
        key = f"negation:{kind}"
        if key not in self._index:
            by_first: dict[str, list[tuple[str, ...]]] = {}
            for option in getattr(self.negation, kind):
                by_first.setdefault(option[0], []).append(option)
            self._index[key] = by_first
        return self._index[key]

    def phrases_starting_with(self, spec: TokenSpec) -> list[tuple[str, int]]:
        """(flag id, phrase index) of every phrase whose first position is this spec."""
        if "by_first" not in self._index:
            by_first: dict[TokenSpec, list[tuple[str, int]]] = {}
            for rule in self.flags:
                for index, phrase in enumerate(rule.phrases):
                    by_first.setdefault(phrase[0], []).append((rule.id, index))
            self._index["by_first"] = by_first
        return self._index["by_first"].get(spec, [])

    def token_specs(self, token: str) -> set[TokenSpec]:
        """Every phrase position this message word can fill."""
        matched = self.words.matches(token)
        specs_by_alternative = self._index["specs"]
        return {spec for alt in matched for spec in specs_by_alternative.get(alt, ())}


def _phrase_words(raw: str) -> tuple[str, ...]:
    return tuple(words(raw))


def _parse_phrase(raw: object, where: str) -> Phrase:
    if not isinstance(raw, str) or not raw.strip():
        raise DataFileError(f"{where}: every phrase must be a non-empty string, got {raw!r}")
    text = expand_contractions(fold(raw)).replace("-", " ")
    tokens = [t for t in re.split(r"\s+", text) if t]
    try:
        specs = tuple(TokenSpec.parse(t) for t in tokens)
    except ValueError as error:
        raise DataFileError(f"{where}: {error}") from None
    if not specs:
        raise DataFileError(f"{where}: phrase {raw!r} has no words")
    return specs


def _string_list(table: dict, key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise DataFileError(f"{where}: {key!r} must be a list of non-empty strings, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise DataFileError(f"{where}: {key}[{index}] must be a non-empty string, got {item!r}")
    return value


def _check_keys(table: dict, allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise DataFileError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (expected {', '.join(sorted(allowed))})"
        )


def _phrases(table: dict, key: str, where: str) -> tuple[Phrase, ...]:
    return tuple(
        _parse_phrase(raw, f"{where}, {key}[{index}]") for index, raw in enumerate(_string_list(table, key, where))
    )


def _word_sequences(table: dict, key: str, where: str) -> tuple[tuple[str, ...], ...]:
    sequences = []
    for index, raw in enumerate(_string_list(table, key, where)):
        sequence = _phrase_words(raw)
        if not sequence:
            raise DataFileError(f"{where}: {key}[{index}] {raw!r} has no words")
        sequences.append(sequence)
    return tuple(sequences)


TOP_LEVEL_KEYS = ("settings", "flag", "negation", "temperature", "typos")
TEMPERATURE_KEYS = (
    "context", "ambient", "not_units", "abbreviations", "decimal_words", "half_words", "above", "fahrenheit_after",
    "measures",
)
TYPOS_KEYS = ("never",)
FLAG_KEYS = ("id", "label", "phrases", "combinations", "sentence_combinations", "unless_before", "unless_after")
NEGATION_KEYS = ("window", "before", "after", "pseudo", "terminators", "gap_blockers", "resolved")
NUMBER_SETTINGS = {
    # key: (type, lowest, highest)
    "max_gap": (int, 0, 20),
    "fuzzy_min_length": (int, 1, 100),
    "fuzzy_cutoff": (float, 50, 100),
    "fever_threshold_celsius": (float, 35, 43),
}


def parse_lexicon(data: dict, label: str = "red_flags.toml") -> Lexicon:
    """Build a Lexicon from parsed TOML, naming the file and entry in any error."""
    _check_keys(data, TOP_LEVEL_KEYS, f"data file {label}")
    flags_raw = data.get("flag")
    if not isinstance(flags_raw, list) or not flags_raw:
        raise DataFileError(f"data file {label}: needs at least one [[flag]] table")
    rules = []
    seen: set[str] = set()
    for index, entry in enumerate(flags_raw, start=1):
        where = f"data file {label}, flag #{index}"
        if not isinstance(entry, dict):
            raise DataFileError(f"{where}: must be a table")
        flag_id, flag_label = entry.get("id"), entry.get("label")
        if not isinstance(flag_id, str) or not flag_id.strip() or not isinstance(flag_label, str) or not flag_label.strip():
            raise DataFileError(f"{where}: needs a non-empty string 'id' and 'label'")
        if flag_id in seen:
            raise DataFileError(f"{where}: duplicate id {flag_id!r}")
        seen.add(flag_id)
        where = f"data file {label}, flag {flag_id!r}"
        _check_keys(entry, FLAG_KEYS, where)
        phrases = _phrases(entry, "phrases", where)
        combinations = _combinations(entry, "combinations", where)
        sentence_combinations = _combinations(entry, "sentence_combinations", where)
        if not phrases and not combinations and not sentence_combinations:
            raise DataFileError(f"{where}: needs 'phrases' or 'combinations'")
        rules.append(
            FlagRule(
                id=flag_id,
                label=flag_label,
                phrases=phrases,
                combinations=combinations,
                sentence_combinations=sentence_combinations,
                unless_before=_word_sequences(entry, "unless_before", where),
                unless_after=_word_sequences(entry, "unless_after", where),
            )
        )
    negation_raw = data.get("negation", {})
    where = f"data file {label}, [negation]"
    if not isinstance(negation_raw, dict):
        raise DataFileError(f"{where}: must be a table")
    _check_keys(negation_raw, NEGATION_KEYS, where)
    window = negation_raw.get("window", 5)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise DataFileError(f"{where}: 'window' must be a positive integer, got {window!r}")
    negation = NegationRules(
        window=window, **{key: _word_sequences(negation_raw, key, where) for key in NEGATION_KEYS[1:]}
    )
    settings = data.get("settings", {})
    where = f"data file {label}, [settings]"
    if not isinstance(settings, dict):
        raise DataFileError(f"{where}: must be a table")
    _check_keys(settings, NUMBER_SETTINGS, where)
    numbers = {}
    for key, value in settings.items():
        kind, lowest, highest = NUMBER_SETTINGS[key]
        allowed = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed) or not lowest <= value <= highest:
            kind_name = "an integer" if kind is int else "a number"
            raise DataFileError(f"{where}: {key!r} must be {kind_name} from {lowest} to {highest}, got {value!r}")
        numbers[key] = value
    temperature_raw = data.get("temperature", {})
    spoken_numbers: tuple[tuple[str, str], ...] = ()
    if isinstance(temperature_raw, dict) and "spoken_numbers" in temperature_raw:
        temperature_raw = dict(temperature_raw)
        spoken_numbers = _spoken_numbers(temperature_raw.pop("spoken_numbers"), f"data file {label}, [temperature.spoken_numbers]")
    temperature = _table({"temperature": temperature_raw}, "temperature", TEMPERATURE_KEYS, f"data file {label}, [temperature]")
    typos = _table(data, "typos", TYPOS_KEYS, f"data file {label}, [typos]")
    return Lexicon(
        flags=tuple(rules),
        negation=negation,
        temperature=TemperatureRules(
            spoken_numbers=spoken_numbers, **{key: tuple(values) for key, values in temperature.items()}
        ),
        never_typos=frozenset(word for raw in typos.get("never", []) for word in _phrase_words(raw)),
        **numbers,
    )


def _spoken_numbers(table: object, where: str) -> tuple[tuple[str, str], ...]:
    """[temperature.spoken_numbers]: number words (folded) → digits, e.g. "thirty nine" = "39"."""
    if not isinstance(table, dict):
        raise DataFileError(f"{where}: must be a table of words = \"digits\"")
    pairs = []
    for phrase, digits in table.items():
        if not isinstance(digits, str) or not digits.isdecimal() or not words(phrase):
            raise DataFileError(f"{where}: {phrase!r} must map words to a string of digits, got {digits!r}")
        pairs.append((" ".join(words(phrase)), digits))
    return tuple(pairs)


def _combinations(entry: dict, key: str, where: str) -> tuple[tuple[Phrase, ...], ...]:
    """A flag's list of combinations: each a list of two or more phrases."""
    raw_list = entry.get(key, [])
    if not isinstance(raw_list, list):
        raise DataFileError(f"{where}: {key!r} must be a list of lists of two or more phrases")
    combinations = []
    for index, combo in enumerate(raw_list):
        if not isinstance(combo, list) or len(combo) < 2:
            raise DataFileError(f"{where}: {key}[{index}] must be a list of two or more phrases")
        combinations.append(
            tuple(_parse_phrase(raw, f"{where}, {key}[{index}][{part}]") for part, raw in enumerate(combo))
        )
    return tuple(combinations)


def _table(data: dict, key: str, allowed: tuple[str, ...], where: str) -> dict[str, list[str]]:
    """An optional table whose entries are all lists of non-empty strings."""
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise DataFileError(f"{where}: must be a table")
    _check_keys(table, allowed, where)
    result = {}
    for name in table:
        result[name] = []
        for index, raw in enumerate(_string_list(table, name, where)):
            tokens = expand_contractions(fold(raw)).replace("-", " ").split()
            if not tokens or not all(LEXICON_WORD_RE.fullmatch(t.removesuffix("*")) for t in tokens):
                raise DataFileError(f"{where}: {name}[{index}] {raw!r} must be words (a final '*' for a prefix)")
            result[name].append(" ".join(tokens))
    return result


def load_lexicon(source: str | Path = "red_flags.toml") -> Lexicon:
    label = f"bot/data/{source}" if isinstance(source, str) and "/" not in source else str(source)
    return parse_lexicon(load_toml(source), label)


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """The bundled lexicon, or the file named by the RED_FLAGS_FILE environment variable."""
    override = os.environ.get(LEXICON_ENV_VAR, "").strip()
    return load_lexicon(Path(override)) if override else load_lexicon()


# ---------------------------------------------------------------------------------------------
# Detection


def split_sentences(text: str) -> list[str]:
    return [c for c in SENTENCE_SPLIT_RE.split(text) if c and c.strip()]


def split_clauses(text: str) -> list[str]:
    return [c for c in CLAUSE_SPLIT_RE.split(text) if c and c.strip()]


def _find_sequence(tokens: list[str], sequence: tuple[str, ...], start: int, stop: int) -> list[int]:
    """Start positions of an exact word sequence within tokens[start:stop]."""
    n = len(sequence)
    return [i for i in range(max(start, 0), min(stop, len(tokens)) - n + 1) if tuple(tokens[i : i + n]) == sequence]


class _ClauseMatcher:
    def __init__(self, lexicon: Lexicon, tokens: list[str], barriers: tuple[int, ...] = ()) -> None:
        self.lexicon = lexicon
        self.tokens = tokens
        # Positions where a new clause starts (when matching a whole sentence): negation stops there.
        self.barriers = barriers
        self.positions: dict[TokenSpec, list[int]] = {}
        for position, token in enumerate(tokens):
            for spec in lexicon.token_specs(token):
                self.positions.setdefault(spec, []).append(position)
        self._negation_cache = {}
        self.candidates: dict[str, list[int]] = {}
        for spec in self.positions:
            for flag_id, index in lexicon.phrases_starting_with(spec):
                self.candidates.setdefault(flag_id, []).append(index)

    def could_match(self, phrase: Phrase) -> bool:
        return all(spec in self.positions for spec in phrase)

    def find_phrase(self, phrase: Phrase) -> list[tuple[int, ...]]:
        """Every match of a phrase: the token positions it used (in order, small gaps allowed)."""
        if not self.could_match(phrase):
            return []
        found = []
        reach = self.lexicon.max_gap + 1
        negation = self.lexicon.negation
        triggers, blockers = negation.single_word_triggers, negation.blocker_words
        for start in self.positions[phrase[0]]:
            positions = [start]
            for spec in phrase[1:]:
                candidates = self.positions[spec]
                i = bisect.bisect_right(candidates, positions[-1])
                if i == len(candidates) or candidates[i] - positions[-1] > reach:
                    break
                previous = positions[-1]
                gap = self.tokens[previous + 1 : candidates[i]]
                # "face is not drooping": a negation inside the gap breaks the phrase (a pseudo-negation,
                # "won't stop spinning", does not); "not breathing" must not match "not having trouble breathing".
                negations_in_gap = [
                    p for p in range(previous + 1, candidates[i])
                    if self.tokens[p] in triggers and p not in self.pseudo_positions
                ]
                if negations_in_gap or (
                    gap and self.tokens[previous] in triggers and blockers.intersection(gap)
                ):
                    break
                positions.append(candidates[i])
            else:
                found.append(tuple(positions))
        return found

    @cached_property
    def pseudo_positions(self) -> frozenset[int]:
        """Positions of words that belong to a pseudo-negation ("not stop", "no longer")."""
        return frozenset(p for a, b in self._occurrences("pseudo")[1] for p in range(a, b))

    def _sequence_before(self, position: int, options: Iterable[tuple[str, ...]], reach: int) -> bool:
        return any(
            _find_sequence(self.tokens, option, position - reach - len(option) + 1, position)
            for option in options
        )

    def _occurrences(self, kind: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Every (start, end) of one kind of negation words ("before", "pseudo", ...) in the clause,
        found once per clause; with the sorted starts for bisecting."""
        cached = self._negation_cache.get(kind)
        if cached is None:
            by_first = self.lexicon.negation_index(kind)
            hits = []
            for i, token in enumerate(self.tokens):
                for option in by_first.get(token, ()):
                    if tuple(self.tokens[i : i + len(option)]) == option:
                        hits.append((i, i + len(option)))
            hits.sort()
            cached = self._negation_cache[kind] = ([a for a, _ in hits], hits)
        return cached

    def _near(self, kind: str, lo: int, hi: int, used: set[int]) -> list[tuple[int, int]]:
        """Occurrences of a kind that lie within tokens[lo:hi] and use no word of the match."""
        starts, hits = self._occurrences(kind)
        i = bisect.bisect_left(starts, max(lo, 0))
        found = []
        while i < len(hits) and hits[i][0] < hi:
            a, b = hits[i]
            if b <= hi and not used.intersection(range(a, b)):
                found.append((a, b))
            i += 1
        return found

    def negated(self, span: tuple[int, ...], words_of_match: Iterable[int] = ()) -> bool:
        """NegEx: is this match within a negation's scope in the clause? Words of the whole match
        (`words_of_match`, for a part of a combination) are never read as negations."""
        rules = self.lexicon.negation
        used = set(span) | set(words_of_match)
        first, last = min(span), max(span)
        # Only the neighbourhood of the match matters (keeps long clauses linear, not quadratic).
        lo, hi = max(0, first - rules.window - NEGATION_MARGIN), last + 1 + rules.window + NEGATION_MARGIN
        pseudo_positions = {p for a, b in self._near("pseudo", lo, hi, used) for p in range(a, b)}
        terminators = self._near("terminators", lo, hi, used)

        def terminated(lo: int, hi: int) -> bool:
            return any(lo <= a and b <= hi for a, b in terminators) or any(lo <= p <= hi for p in self.barriers)

        for a, b in self._near("before", first - rules.window - 2, first, used):
            if pseudo_positions.intersection(range(a, b)):
                continue
            if first - b <= rules.window and not terminated(b, first):
                return True
        for a, _ in self._near("resolved", last + 1, len(self.tokens), used):
            # A terminator that ends right where the phrase starts ("... but | it's gone") does not count.
            between = self._near("terminators", last + 1, a, used)
            if not any(tb < a for _, tb in between) and not any(last < p < a for p in self.barriers):
                return True
        for a, b in self._near("after", last + 1, last + 1 + rules.window + 3, used):
            if pseudo_positions.intersection(range(a, b)):
                continue
            if a - last - 1 <= rules.window and not terminated(last + 1, a):
                return True
        return False

    def excluded(self, rule: FlagRule, span: tuple[int, ...]) -> bool:
        """A softening word right before ("mild headache") or a qualifier right after ("confused about")."""
        first, last = min(span), max(span)
        if self._sequence_before(first, rule.unless_before, reach=2):
            return True
        return any(
            _find_sequence(self.tokens, option, last + 1, last + 1 + len(option)) for option in rule.unless_after
        )

    def rule_evidence(self, rule: FlagRule) -> str | None:
        if not self.positions:
            return None
        for index in sorted(self.candidates.get(rule.id, ())):
            for span in self.find_phrase(rule.phrases[index]):
                if not self.excluded(rule, span) and not self.negated(span):
                    return " ".join(self.tokens[min(span) : max(span) + 1])
        return self.combination_evidence(rule, rule.combinations)

    def combination_evidence(self, rule: FlagRule, combinations: tuple[tuple[Phrase, ...], ...]) -> str | None:
        for combination in combinations:
            spans = [self.find_phrase(part)[:MAX_SPANS_PER_PART] for part in combination]
            if not all(spans):
                continue
            # Every choice of one match per part, not just the first: in "can not tell, can not lift my
            # right arm" the first "can not" is negated by nothing but the second one counts.
            for chosen in itertools.product(*spans):
                positions = tuple(sorted({p for span in chosen for p in span}))
                # Negated as a whole, or in one of its parts: "my face isn't drooping" is no drooping face.
                if any(self.negated(span, positions) for span in chosen):
                    continue
                if not self.excluded(rule, positions) and not self.negated(positions):
                    return " ".join(self.tokens[i] for i in positions)
        return None


@dataclass(frozen=True)
class TemperatureReading:
    celsius: float
    text: str


def read_temperatures(text: str, lexicon: Lexicon | None = None) -> list[TemperatureReading]:
    """Body temperatures stated in folded text: numbers with a unit, the first number after a context
    word ("temp 38.7", "fever of 39"), a number right before one ("a 102 temperature"), a bare number
    with decimals ("he is 39.2"), after "above"/"over" ("over 39") or a bare °F after "she's" ("she's
    103"); not the weather ("39 degrees outside"), "fever for 40 hours" or "blood sugar is 104"."""
    rules = (lexicon or default_lexicon()).temperature
    context_re, ambient_re, not_units_re = _temperature_regexes(rules)
    numbers = list(TEMPERATURE_RE.finditer(text))
    if not numbers:
        return []
    starts = [n.start() for n in numbers]
    first_after_context = set()
    for context in context_re.finditer(text) if context_re else ():
        i = bisect.bisect_left(starts, context.end())
        if i < len(starts) and starts[i] - context.end() <= CONTEXT_REACH_CHARS:
            first_after_context.add(starts[i])
        i = bisect.bisect_right(starts, context.start()) - 1
        if i >= 0 and BEFORE_CONTEXT_GAP_RE.fullmatch(text, numbers[i].end(), context.start()):
            first_after_context.add(starts[i])
    ambient = [(m.start(), m.end()) for m in ambient_re.finditer(text)] if ambient_re else []
    readings = []
    for match in numbers:
        unit = re.sub(r"\s+", "", match.group("unit") or "")
        after_above = _just_before(rules.above_re, text, match.start())
        if not unit:
            has_decimals = any(sep in match.group("value") for sep in ".,")
            # "been over 39 all night"; but a round "over 40" after no context word is usually an age.
            value = float(match.group("value").replace(",", "."))
            bare_bound = after_above and value % 5 != 0
            bare_fahrenheit = 100 <= value <= 110 and _just_before(rules.fahrenheit_after_re, text, match.start())
            if match.start() not in first_after_context and not (has_decimals or bare_bound or bare_fahrenheit):
                continue
            if not_units_re and not_units_re.match(text, SPACES_RE.match(text, match.end()).end()):
                continue
        if ambient and _is_ambient(text, match, ambient):
            continue
        if _just_before(rules.measures_re, text, match.start()):
            continue
        celsius = _to_celsius(float(match.group("value").replace(",", ".")), unit)
        if celsius is not None and after_above:
            celsius += ABOVE_MARGIN  # "fever above 38.5" is above the threshold
        if celsius is not None:
            readings.append(TemperatureReading(celsius, match.group(0).strip()))
    return readings


def _just_before(pattern: re.Pattern[str] | None, text: str, position: int, reach: int = 40) -> bool:
    """Does `pattern` (anchored with `$`) match the text that ends at `position`? Looks back `reach`
    characters only, so a long message full of numbers stays linear."""
    return pattern is not None and pattern.search(text, max(0, position - reach), position) is not None


def _temperature_regexes(rules: TemperatureRules) -> tuple:
    cached = _TEMPERATURE_REGEXES.get(rules)
    if cached is None:
        cached = _TEMPERATURE_REGEXES[rules] = (rules.context_re, rules.ambient_re, rules.not_units_re)
    return cached


_TEMPERATURE_REGEXES: dict[TemperatureRules, tuple] = {}
# How close (in characters, within one clause) a weather word must be to make a number ambient.
AMBIENT_REACH_CHARS = 12
SPACES_RE = re.compile(r"\s*")
CLAUSE_BREAK_RE = re.compile(r"[!?;:\n()\[\]]|[.,](?!\d)|(?<!\d)[.,]")


def _is_ambient(text: str, match: re.Match[str], ambient: list[tuple[int, int]]) -> bool:
    """Is a weather or water word ("outside", "in the shade") right next to this number, in its clause?"""
    i = bisect.bisect_left(ambient, (match.start() - AMBIENT_REACH_CHARS - 100, 0))
    for start, end in ambient[i:]:
        if start > match.end() + AMBIENT_REACH_CHARS:
            break
        if 0 <= start - match.end() <= AMBIENT_REACH_CHARS:
            between = text[match.end() : start]
        elif 0 <= match.start() - end <= AMBIENT_REACH_CHARS:
            between = text[end : match.start()]
        else:
            continue
        if not CLAUSE_BREAK_RE.search(between):
            return True
    return False


def _in_range(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


def _to_celsius(value: float, unit: str) -> float | None:
    """Degrees Celsius from a reading; a missing unit is inferred from the number's range."""
    if unit.endswith("f") or "fahrenheit" in unit:
        return (value - 32) * 5 / 9 if _in_range(value, FAHRENHEIT_RANGE) else None
    if _in_range(value, CELSIUS_RANGE):
        return value
    if _in_range(value, FAHRENHEIT_RANGE) and not (unit.endswith("c") and len(unit) == 1):
        return (value - 32) * 5 / 9
    return None


def detect_red_flags(text: str, lexicon: Lexicon | None = None) -> list[RedFlag]:
    """Every red flag in a message, in lexicon order, each with the words that showed it.

    Temperatures are read per sentence: a stated temperature above the threshold is the fever flag,
    and a stated temperature at or below it overrides fever words in its sentence ("a fever, 37.9").
    Everything else is matched clause by clause, with negation scoped to the clause."""
    lexicon = lexicon or default_lexicon()
    # "º" (the ordinal indicator, often typed for a degree sign) would fold to "o".
    folded = expand_contractions(fold(text.replace("º", "°"))).replace("-", " ")
    abbreviation_re = lexicon.temperature.abbreviation_re
    if abbreviation_re is not None:
        folded = abbreviation_re.sub(r"\1 ", folded)
    for pattern, replacement in lexicon.temperature.spoken_number_rules:
        folded = pattern.sub(replacement, folded)
    found: dict[str, str] = {}
    for sentence in split_sentences(folded):
        readings = read_temperatures(sentence, lexicon)
        if readings:
            hottest = max(readings, key=lambda r: r.celsius)
            if hottest.celsius > lexicon.fever_threshold_celsius:
                found.setdefault(FEVER_FLAG, hottest.text)
        # Also read with "can t" as "can not" (dictated, or a space typed for the apostrophe): an
        # extra reading only adds flags.
        spaced = SPACED_NEGATION_RE.sub(r"\1nt", sentence)
        for reading in (sentence, expand_contractions(spaced)) if spaced != sentence else (sentence,):
            clauses = split_clauses(reading)
            for clause in clauses:
                for flag_id, evidence in clause_flags(lexicon, clause, fever_words=not readings):
                    found.setdefault(flag_id, evidence)
            if len(clauses) > 1:
                for flag_id, evidence in sentence_flags(lexicon, clauses, skip=found):
                    found.setdefault(flag_id, evidence)
        if len(found) == len(lexicon.flags):
            break
    return [RedFlag(rule.id, rule.label, found[rule.id]) for rule in lexicon.flags if rule.id in found]


def sentence_flags(lexicon: Lexicon, clauses: list[str], skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(flag id, evidence) for the `sentence_combinations` whose parts lie in different clauses."""
    rules = [rule for rule in lexicon.flags if rule.sentence_combinations and rule.id not in skip]
    if not rules:
        return []
    tokens: list[str] = []
    barriers = []
    for clause in clauses:
        if tokens:
            barriers.append(len(tokens))
        tokens.extend(words(clause))
    matcher = _ClauseMatcher(lexicon, tokens, tuple(barriers))
    found = []
    for rule in rules:
        evidence = matcher.combination_evidence(rule, rule.sentence_combinations)
        if evidence is not None:
            found.append((rule.id, evidence))
    return found


def rejoin_split_words(lexicon: Lexicon, tokens: list[str]) -> list[str]:
    """The tokens with each run of two or three pieces joined that the lexicon knows as one word
    ("un conscious", "para ly sis"): dictation splits long words."""
    joined: list[str] = []
    i = 0
    while i < len(tokens):
        for size in range(min(MAX_REJOINED_PIECES, len(tokens) - i), 1, -1):
            pieces = tokens[i : i + size]
            if all(len(piece) > 1 and piece.isalpha() for piece in pieces) and _lexicon_word_split(lexicon, pieces):
                joined.append("".join(pieces))
                i += size
                break
        else:
            joined.append(tokens[i])
            i += 1
    return joined


def _lexicon_word_split(lexicon: Lexicon, pieces: list[str]) -> bool:
    """Whether the pieces together are a lexicon word, or the start of one that the first piece alone
    does not reach ("para lysis": "paralys*"; not "headache has", where "headache" already is "headach*")."""
    return any(not is_prefix or len(text) > len(pieces[0]) for text, is_prefix in lexicon.words.known("".join(pieces)))


def clause_flags(lexicon: Lexicon, clause: str, fever_words: bool = True) -> list[tuple[str, str]]:
    """(flag id, evidence) for each flag the words of one clause show; repeated clauses come from a cache.

    With `fever_words` false (the sentence states a temperature) fever words do not count."""
    cache = lexicon._index.setdefault("clauses", {})
    key = (clause, fever_words)
    if key in cache:
        return cache[key]
    found = []
    tokens = words(clause)
    if tokens:
        # Also read it with the words dictation split apart put back together ("un conscious"): an
        # extra reading only adds flags.
        rejoined = rejoin_split_words(lexicon, tokens)
        matchers = [_ClauseMatcher(lexicon, reading) for reading in ([tokens, rejoined] if rejoined != tokens else [tokens])]
        for rule in lexicon.flags:
            if rule.id == FEVER_FLAG and not fever_words:
                continue
            evidence = next((e for e in (m.rule_evidence(rule) for m in matchers) if e is not None), None)
            if evidence is not None:
                found.append((rule.id, evidence))
    if len(cache) < 10_000:
        cache[key] = found
    return found
