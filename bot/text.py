"""Text normalisation shared by retrieval and safety."""

from __future__ import annotations

import re
import unicodedata

WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")  # letters and digits of any script
CONTRACTIONS = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "n't": " not",
}
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})
_CONTROL_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}


def fold(text: str) -> str:
    """Lowercase, strip accents, unify apostrophes and drop control and format characters."""
    if text.isascii() and text.isprintable():
        return text.casefold()  # the common case: nothing to decompose, translate or drop
    decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    kept = (
        " " if unicodedata.category(ch) in _CONTROL_CATEGORIES and ch not in "\n\t" else ch
        for ch in decomposed
        if not unicodedata.combining(ch)
    )
    return "".join(kept).casefold()


# Negative contractions people type without the apostrophe ("cant", "didnt").
BARE_NEGATIONS_RE = re.compile(
    r"\b(ca|do|does|did|wo|could|would|should|is|are|was|were|has|have|had|must|need)nt\b"
)


_WHOLE_CONTRACTIONS_RE = re.compile(r"\b(can't|cannot|won't)\b")
_NT_RE = re.compile(r"(\w)n't\b")
_ANY_CONTRACTION_RE = re.compile(r"n't|cannot|" + BARE_NEGATIONS_RE.pattern)


def expand_contractions(text: str) -> str:
    """Spell negative contractions out ("can't", "cant" → "can not"), so negation is one word."""
    if not _ANY_CONTRACTION_RE.search(text):
        return text  # the common case: one scan instead of three substitutions
    text = _WHOLE_CONTRACTIONS_RE.sub(lambda m: CONTRACTIONS[m.group(1)], text)
    text = _NT_RE.sub(r"\1 not", text)
    return BARE_NEGATIONS_RE.sub(
        lambda m: {"ca": "can", "wo": "will"}.get(m.group(1), m.group(1)) + " not", text
    )


def words(text: str) -> list[str]:
    """Folded word tokens, contractions expanded ("don't" → "do", "not")."""
    return WORD_RE.findall(expand_contractions(fold(text)))


def clean_user_text(text: str) -> str:
    """User text made safe to echo: no control characters, whitespace collapsed."""
    if text.isascii() and text.isprintable():
        return " ".join(text.split())  # the common case: spaces are its only whitespace
    without_controls = "".join(
        " " if unicodedata.category(ch) in _CONTROL_CATEGORIES else ch for ch in text
    )
    return re.sub(r"\s+", " ", without_controls).strip()
