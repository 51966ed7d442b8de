# ruff: noqa: RUF001  (look-alike letters are the point here)
"""Undo the tricks that hide an injected instruction from a detector.

`normalise(text)` returns the *views* a detector should scan — the cleaned text, the text
with look-alike letters mapped to Latin ones and letter-spacing collapsed, and every
encoded run (base64, hex, percent/URL encoding, HTML entities, rot13, Unicode tag
characters) decoded — and the *tricks* it found on the way. Hiding text is itself a
signal: Unicode tag characters carry ASCII no reader sees, and a base64 run that decodes
to English sentences is not what a weather API returns.

Pure Python, no Django: the engine imports it.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import unquote

# Format characters that render as nothing: zero-width spaces and joiners, word joiner,
# invisible operators, byte-order mark, soft hyphen, Mongolian vowel separator.
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u034f")
# Bidirectional controls: reorder what is displayed without changing what a model reads.
BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c")
TAG_FIRST, TAG_LAST = 0xE0000, 0xE007F

# Letters that look like Latin ones (Cyrillic, Greek, a few IPA/Latin-extended). NFKC
# already folds fullwidth, mathematical and circled forms; these survive it.
CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "һ": "h", "ԁ": "d", "ɡ": "g",
    "ԛ": "q", "ԝ": "w", "ь": "b", "п": "n", "г": "r", "л": "n", "и": "u", "ѵ": "v", "ӏ": "l", "ԍ": "g",
    "Ѵ": "V", "Ӏ": "I", "Ԍ": "G",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "η": "n", "μ": "u",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin extended / IPA look-alikes
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ᴀ": "a", "ʀ": "r", "ꜱ": "s", "ᴜ": "u", "ɴ": "n",
    "ʟ": "l", "ɪ": "i", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ᴋ": "k", "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ᴛ": "t",
    "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ʜ": "h", "ɢ": "g",
    # Greek lunate sigma and yot, Armenian
    "ϲ": "c", "Ϲ": "C", "ϳ": "j", "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q",
})
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})

# "i g n o r e", "i.g.n.o.r.e", "i-g.n-o.r-e", "i_g_n_o_r_e": three or more single letters
# joined by blanks, or by punctuation (one kind or mixed), not both: the words of
# "i.g.n.o.r.e a.l.l" stay apart (with any separator they ran together, found by a review),
# and alternating `.` and `-` inside a word does not hide it (found by the next one).
SPACED = re.compile(r"(?<![\w])[^\W\d_](?:(?:[.\-_*·|/][^\W\d_]){2,}|(?: [^\W\d_]){2,})(?![^\W_])_?")
# Once letter spacing is evident, two-letter words ("t o", "A_I") are collapsed too.
SPACED_SHORT = re.compile(r"(?<![\w])[^\W\d_][ .\-_*·|/][^\W\d_](?![^\W_])_?")
BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}")
HEX_RUN = re.compile(r"(?<![0-9A-Za-z])(?:(?:0x|\\x)?[0-9A-Fa-f]{2}[\s:,]?){8,}")
PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
ENTITY = re.compile(r"&#(x[0-9A-Fa-f]+|\d+);|&[a-z]+;")
LONG_ENTITY = re.compile(r"&#(?:x0*[0-9A-Fa-f]{9,}|0*\d{9,});?")  # (no code point has that many digits)
COMMON_WORDS = frozenset("the and to you your all of a is in for send ignore instructions please now this that with "
                         "from email password user assistant system data file previous".split())


@dataclass(slots=True)
class Normalised:
    """What a detector scans: `views` (the cleaned text first), and the `tricks` found."""

    views: list[str] = field(default_factory=list)
    tricks: list[str] = field(default_factory=list)
    hidden: str = ""  # ASCII carried by Unicode tag characters

    @property
    def text(self) -> str:
        return "\n".join(self.views)

    def add(self, view: str) -> None:
        view = view.strip()
        if view and view not in self.views:
            self.views.append(view)

    def found(self, trick: str) -> None:
        if trick not in self.tricks:
            self.tricks.append(trick)


def normalise(text: str, *, depth: int = 2) -> Normalised:
    """Every view of `text` worth scanning, decoding nested encodings up to `depth` levels."""
    result = Normalised()
    _normalise_into(_encodable(text), result, depth)
    return result


def _encodable(text: str) -> str:
    """The text with lone surrogates (JSON's `"\\ud800"` parses to one) replaced: tokenizers
    refuse them, and a detector raised instead of answering (found by a review)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _normalise_into(text: str, result: Normalised, depth: int) -> None:
    visible, hidden = _split_tags(text)
    if hidden:
        result.found("unicode tag characters")
        result.hidden += hidden
    cleaned = _strip_invisible(visible, result)
    folded = unicodedata.normalize("NFKC", cleaned)
    if folded != cleaned and _letters(folded) != _letters(cleaned):
        result.found("compatibility forms")
    result.add(folded)
    mapped = _map_confusables(folded)
    if mapped != folded:
        result.found("homoglyphs")
    collapsed = SPACED.sub(lambda m: re.sub(r"[ .\-_*·|/]", "", m.group()), mapped)
    if collapsed != mapped:
        collapsed = SPACED_SHORT.sub(lambda m: re.sub(r"[ .\-_*·|/]", "", m.group()), collapsed)
        collapsed = re.sub(r"[ \t]{2,}", " ", collapsed)
    if collapsed != mapped:
        result.found("letter spacing")
    result.add(collapsed)
    leet = _unleet(collapsed)
    if leet != collapsed:
        result.found("leetspeak")
        result.add(leet)
    if hidden:
        result.add(hidden)
    if depth <= 0:
        return
    for trick, decoded in _decodings(collapsed if collapsed else folded, deeper=depth > 1):
        result.found(trick)
        _normalise_into(decoded, result, depth - 1)
    if hidden:
        for trick, decoded in _decodings(hidden, deeper=depth > 1):
            result.found(trick)
            _normalise_into(decoded, result, depth - 1)


def _split_tags(text: str) -> tuple[str, str]:
    if not any(TAG_FIRST <= ord(c) <= TAG_LAST for c in text):
        return text, ""
    visible, hidden = [], []
    for c in text:
        code = ord(c)
        if TAG_FIRST <= code <= TAG_LAST:
            if 0xE0020 <= code <= 0xE007E:
                hidden.append(chr(code - 0xE0000))
        else:
            visible.append(c)
    return "".join(visible), "".join(hidden)


def _strip_invisible(text: str, result: Normalised) -> str:
    # Right-to-left override shows reversed text the right way round to a human.
    if "\u202e" in text:
        result.found("bidi controls")
        text = re.sub("\u202e([^\u202c\n]*)\u202c?", lambda m: m.group(1)[::-1], text)
    out = []
    for c in text:
        if c in ZERO_WIDTH:
            result.found("zero-width characters")
        elif c in BIDI:
            result.found("bidi controls")
        elif unicodedata.category(c) == "Cf":
            result.found("format characters")
        else:
            out.append(c)
    return "".join(out)


def _letters(text: str) -> str:
    return "".join(c for c in text if c.isalpha()).lower()


def _map_confusables(text: str) -> str:
    # Only words that mix scripts, or look-alikes standing among Latin words, are mapped:
    # a Russian or Greek sentence stays as written.
    def fix(match: re.Match) -> str:
        word = match.group()
        mapped = word.translate(CONFUSABLES)
        has_latin = any("a" <= c.lower() <= "z" for c in word)
        if has_latin or latin_context:
            return mapped
        return word

    latin = sum(1 for c in text if "a" <= c.lower() <= "z")
    letters = sum(1 for c in text if c.isalpha())
    latin_context = letters > 0 and latin / letters > 0.6
    return re.sub(r"[^\W\d_]+", fix, text)


def _unleet(text: str) -> str:
    # Where leetspeak is evident (several words mixing letters with 3/4/5/7/0/1), words with a
    # single letter left ("7h3", "4551574n7") are read too.
    heavy = len(re.findall(r"(?<![\w@$!])(?=\w*[A-Za-z])(?=(?:\w*[013457]){2})\w+", text)) >= 4

    def fix(match: re.Match) -> str:
        word = match.group()
        letters = sum(c.isalpha() for c in word)
        hexlike = re.fullmatch(r"[0-9a-fA-F]+", word) and not (heavy and len(word) <= 6)
        if (2 if not heavy else 1) <= letters < len(word) <= 20 and not hexlike:
            return word.translate(LEET)
        return word

    # (Each match starts where a run of these characters starts: `!` missing from the
    # lookbehind made 20,000 of them take 1.6 s, found by a review.)
    return re.sub(r"(?<![\w@$!])[A-Za-z0-9@$!]*[A-Za-z][A-Za-z0-9@$!]*", fix, text)


def _readable(data: bytes | str, *, encoded: bool = False) -> str | None:
    """Decoded text if it reads like language (mostly printable, with words), else None. With
    `encoded`, also a run that is itself encoded (base64 of base64, hex of base64, base64 of
    %-encoding), for the next level to decode: it has no spaces, and the second level was never
    reached (found by a review). Invisible characters are not counted: between the letters of
    an encoded payload they made it "unprintable" and it was dropped."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if len(data) < 6:
        return None
    if encoded and _encoded_run(data):
        return data
    visible = "".join(c for c in data if c not in ZERO_WIDTH and c not in BIDI and not TAG_FIRST <= ord(c) <= TAG_LAST)
    if not visible:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in visible)
    if printable / len(visible) < 0.95:
        return None
    letters = sum(c.isalpha() for c in visible)
    if letters / len(visible) < 0.5 or " " not in visible.strip():
        return None
    return data


def _encoded_run(data: str) -> bool:
    """Whether `data` is, whole, one more layer of encoding."""
    bare = data.strip()
    return len(bare) >= 16 and (BASE64_RUN.fullmatch(bare) is not None or HEX_RUN.fullmatch(bare) is not None
                                or len(PERCENT.findall(bare)) >= 3)


def _decodings(text: str, *, deeper: bool = False) -> list[tuple[str, str]]:
    """Each kind of encoding found, with everything it decoded to: the runs of one kind joined,
    one view and one level of recursion per kind — a view per run let a megabyte of small
    base64 runs make thousands of views (found by a review). `deeper`: a run that decodes to
    another encoded run is kept for the next level."""
    found: list[tuple[str, str]] = []
    runs = []
    for match in BASE64_RUN.finditer(text):
        run = match.group().replace("-", "+").replace("_", "/")
        run += "=" * (-len(run) % 4)
        try:
            decoded = _readable(base64.b64decode(run, validate=True), encoded=deeper)
        except (binascii.Error, ValueError):
            decoded = None
        if decoded:
            runs.append(decoded)
    if runs:
        found.append(("base64", "\n".join(runs)))
    runs = []
    for match in HEX_RUN.finditer(text):
        digits = re.sub(r"0x|\\x|[\s:,]", "", match.group())
        if len(digits) % 2:
            digits = digits[:-1]
        try:
            decoded = _readable(bytes.fromhex(digits), encoded=deeper)
        except ValueError:
            decoded = None
        if decoded:
            runs.append(decoded)
    if runs:
        found.append(("hex", "\n".join(runs)))
    if len(PERCENT.findall(text)) >= 3:
        decoded = unquote(text.replace("+", " "))
        if decoded != text:
            found.append(("url encoding", decoded))
    if ENTITY.search(text):
        # (`&#` and 5,000 digits: Python's limit on converting long digit strings raised.)
        decoded = html.unescape(LONG_ENTITY.sub("", text))
        if decoded != text:
            found.append(("html entities", decoded))
    rotated = codecs.encode(text, "rot13")
    if _common_words(rotated) > max(2, 2 * _common_words(text)):
        found.append(("rot13", rotated))
    return found


def _common_words(text: str) -> int:
    return sum(1 for w in re.findall(r"[a-z]+", text.lower()) if w in COMMON_WORDS)
