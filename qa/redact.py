"""Personal-data redaction for stored and exported transcripts and for prompts.

`redact` replaces what identifies a caller with a typed placeholder and reports where:

- `[EMAIL]` e-mail addresses;
- `[ID]` Chinese resident ID numbers (18 characters, the last may be X), only when the
  ISO 7064 MOD 11-2 check character is right: a wrong one is just a number;
- `[CARD]` bank-card numbers of 13-19 digits that pass the Luhn check;
- `[PHONE]` phone numbers: international (`+` and 8-15 digits), NANP (10 digits, or 11 with
  a leading 1), Chinese mobile (`1[3-9]` and 9 more digits), Chinese landline (0 and 9-11
  more digits), and local `555-1234`; separators (space, `-`, `.`, parentheses) allowed;
- `[NUMBER]` dictated digit strings (account, order, policy numbers), in both ways the
  recogniser writes them: as words, English runs such as "four one five double five" and
  Chinese runs of 一二三...幺两 of at least four digits; and as numerals, runs of at least six
  digits ("472983", "472 983") that are no phone, ID or card number (a card number that
  fails Luhn or an ID with a wrong check character is still redacted, as a `[NUMBER]`).
  Either way the recogniser may mishear one digit of a dictated string as a lone letter
  ("nine" as "I", "oh" as "O": "472-I-183", "four seven two I nine eight three"): a single
  letter standing alone between the digits of a run does not end it.

- `[DATE]` full dates with a year from 1900 to this year (dates of birth; the transcript cannot
  tell a birthday from another date, and a full past date said on a call is personal
  enough): "March 12, 1985", "12th of March 1985", "the twelfth of March, nineteen
  eighty-five", "12/03/1985", "1985-03-12", "1985年3月12日", "一九八五年三月十二日".

Ordinary numbers ("two days", "5 minutes", "2024", "两千零二十四年") are kept, and so are
dates without a year ("March 12"), amounts ("12.03") and times ("12:03"). Digits are
matched as ASCII only, so `\\d`'s other scripts never join a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from qa.types import Word

__all__ = ["Redacted", "RedactedSpan", "redact", "redact_words", "is_resident_id", "luhn_valid"]

#: Fewest digits a spoken run must carry before it is taken for a dictated number.
MIN_SPOKEN_DIGITS = 4
#: Fewest digits a written run must carry: six keeps years, times and small amounts, and
#: catches the account numbers Whisper writes as numerals ("it is 472983").
MIN_WRITTEN_DIGITS = 6
#: Most digits of any kind but a NUMBER: a card number (19).
MAX_KIND_DIGITS = 19

# The lookbehind lets a match start only where a run of address characters starts: without
# it every position of a long run ("1-1-1-...") rescans the run to its end (quadratic).
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# A digit group; an X may close one only where an ID can end.
_GROUP = re.compile(r"[0-9]+(?:[Xx](?![A-Za-z0-9]))?")
# What may stand between the groups of one written number.
_GAP = re.compile(r"[ \-.()]{1,3}")

# Numerals joined by blanks and hyphens, or by a lone letter between them ("472-I-183"):
# the lookbehind starts a match only where a run starts, and no gap can be read two ways, so
# the scan is linear in the text.
_LETTER_JOINED = re.compile(
    r"(?<![A-Za-z0-9.,])[0-9]+(?:(?:[ \-]{1,3}|[ \-]{1,2}[A-Za-z][ \-]{1,2})[0-9]+)+"
)
_LONE_LETTER = re.compile(r"[ \-][A-Za-z][ \-]")

_EN_DIGITS = {
    "zero": 1, "oh": 1, "one": 1, "two": 1, "three": 1, "four": 1, "five": 1,
    "six": 1, "seven": 1, "eight": 1, "nine": 1,
}  # fmt: skip
_EN_REPEAT = {"double": 2, "triple": 3}
_EN_TOKEN = re.compile(r"[A-Za-z]+|[0-9]")
_EN_GAP = re.compile(r"[\s,\-]+")
_ZH_RUN = re.compile(r"[一二三四五六七八九零〇幺两](?:[\s,，、\-]*[一二三四五六七八九零〇幺两])*")
_ZH_DIGIT = re.compile(r"[一二三四五六七八九零〇幺两]")

# ISO 7064 MOD 11-2 weights of the first 17 digits, and the check character per remainder.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True, slots=True)
class RedactedSpan:
    """One redacted piece: its kind (`PHONE`, `ID`, `CARD`, `EMAIL`, `NUMBER`, `DATE`) and where it
    was in the original text (`text[start:end]`)."""

    kind: str
    start: int
    end: int

    @property
    def placeholder(self) -> str:
        """The text that replaced it."""
        return f"[{self.kind}]"


@dataclass(frozen=True, slots=True)
class Redacted:
    """The redacted text and the spans of the original that were replaced, in order."""

    text: str
    spans: tuple[RedactedSpan, ...] = ()


def is_resident_id(value: str) -> bool:
    """True when `value` is 17 digits and a valid ISO 7064 MOD 11-2 check character."""
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17].upper()


def luhn_valid(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _classify(
    digits: str, plus: bool, groups: tuple[int, ...], spaced: bool = True
) -> str | None:
    """The kind of a written number, or None for an ordinary one. `spaced`: its groups are
    apart by spaces only (not the '-' or '.' of dates and decimals)."""
    if digits[-1] in "Xx":
        return "ID" if is_resident_id(digits) else None
    n = len(digits)
    if n == 18 and is_resident_id(digits):
        return "ID"
    if plus:
        return "PHONE" if 8 <= n <= 15 else None
    if n == 11 and digits[0] == "1" and digits[1] in "3456789":
        return "PHONE"
    # NANP: area code and exchange both start 2-9.
    nanp = digits[1:] if n == 11 and digits[0] == "1" else digits
    if len(nanp) == 10 and nanp[0] in "23456789" and nanp[3] in "23456789":
        return "PHONE"
    if digits[0] == "0" and 10 <= n <= 12 and len(groups) > 1:
        return "PHONE"
    if 13 <= n <= 19 and luhn_valid(digits):
        return "CARD"
    if groups == (3, 4):
        return "PHONE"
    if n >= MIN_WRITTEN_DIGITS and spaced:
        return "NUMBER"
    return None


def _written_numbers(text: str) -> list[RedactedSpan]:
    groups = list(_GROUP.finditer(text))
    spans: list[RedactedSpan] = []
    i = 0
    while i < len(groups):
        # The chain of groups joined only by separators, starting at i.
        chain = [groups[i]]
        while (
            i + len(chain) < len(groups)
            and chain[-1].group()[-1] not in "Xx"
            and _GAP.fullmatch(text, chain[-1].end(), groups[i + len(chain)].start())
        ):
            chain.append(groups[i + len(chain)])
        # Longest run of consecutive groups that is personal data, tried from each start.
        # Only runs of at most MAX_KIND_DIGITS digits can be anything but a spaced NUMBER,
        # so from each start a bounded window is classified, plus the one longest spaced
        # run: linear in the text, where trying every sub-run was cubic (4,000 characters
        # of "12 - " took 11.7 s).
        sizes = [len(m.group()) for m in chain]
        digits = "".join(m.group() for m in chain)
        at = [0]  # at[m]: where group m's digits begin in `digits`
        for size in sizes:
            at.append(at[-1] + size)
        # spaced_to[k]: the end of the longest run from k whose gaps are blanks only.
        spaced_to = [0] * len(chain)
        spaced_to[-1] = len(chain)
        for m in range(len(chain) - 2, -1, -1):
            blank = not text[chain[m].end() : chain[m + 1].start()].strip()
            spaced_to[m] = spaced_to[m + 1] if blank else m + 1
        k = 0
        while k < len(chain):
            bounded, total = k, 0
            while bounded < len(chain) and total + sizes[bounded] <= MAX_KIND_DIGITS:
                total += sizes[bounded]
                bounded += 1
            # Past the window only the longest spaced run can be data (a NUMBER; one group
            # less when it ends in an ID's X); everything longer and not spaced is not.
            top = spaced_to[k]
            longest = [j for j in (top, top - 1) if j > bounded]
            for j in (*longest, *range(bounded, k, -1)):
                part = chain[k:j]
                start = part[0].start()
                lead = text[max(0, start - 2) : start]
                plus = lead.endswith("+") or lead == "+("
                kind = _classify(digits[at[k] : at[j]], plus, tuple(sizes[k:j]), j <= spaced_to[k])
                if kind is not None:
                    if plus:
                        start = text.rindex("+", 0, start)
                    end = part[-1].end()
                    if text[start - 1 : start] == "(":
                        start -= 1  # an area code in parentheses: (415) 555-1234
                    piece = text[start:end]
                    if piece.count("(") > piece.count(")") and text[end : end + 1] == ")":
                        end += 1
                    spans.append(RedactedSpan(kind, start, end))
                    k = j
                    break
            else:
                k += 1
        i += len(chain)
    return spans


def _letter_joined(text: str) -> list[RedactedSpan]:
    """Written dictated numbers that a misheard digit split with a lone letter."""
    return [
        RedactedSpan("NUMBER", m.start(), m.end())
        for m in _LETTER_JOINED.finditer(text)
        if _LONE_LETTER.search(m.group())
        and sum(c.isdigit() for c in m.group()) >= MIN_WRITTEN_DIGITS
    ]


def _lone_letter_between_digits(text: str, tokens: list, j: int) -> bool:
    """Token j is a single letter standing between a digit token and another digit token
    (with the run's own gaps), as a misheard spoken digit is."""
    if j + 1 >= len(tokens) or len(tokens[j].group()) != 1:
        return False
    following = tokens[j + 1].group().lower()
    return (following in _EN_DIGITS or following.isdigit()) and bool(
        _EN_GAP.fullmatch(text, tokens[j].end(), tokens[j + 1].start())
    )


def _spoken_english(text: str) -> list[RedactedSpan]:
    spans: list[RedactedSpan] = []
    tokens = list(_EN_TOKEN.finditer(text))
    i = 0
    while i < len(tokens):
        digits = 0
        j = i
        last_end = -1
        while j < len(tokens):
            tok = tokens[j]
            if j > i and not _EN_GAP.fullmatch(text, tokens[j - 1].end(), tok.start()):
                break
            word = tok.group().lower()
            if word in _EN_DIGITS or word.isdigit():
                digits += 1
                last_end = tok.end()
                j += 1
            elif (
                word in _EN_REPEAT
                and j + 1 < len(tokens)
                and tokens[j + 1].group().lower() in _EN_DIGITS
                and _EN_GAP.fullmatch(text, tok.end(), tokens[j + 1].start())
            ):
                digits += _EN_REPEAT[word]
                last_end = tokens[j + 1].end()
                j += 2
            elif j > i and word.isalpha() and _lone_letter_between_digits(text, tokens, j):
                j += 1  # a misheard digit: the run goes on, the letter counts for nothing
            else:
                break
        if digits >= MIN_SPOKEN_DIGITS:
            spans.append(RedactedSpan("NUMBER", tokens[i].start(), last_end))
            i = j
        else:
            i = max(j, i + 1)
    return spans


def _spoken_chinese(text: str) -> list[RedactedSpan]:
    return [
        RedactedSpan("NUMBER", m.start(), m.end())
        for m in _ZH_RUN.finditer(text)
        if len(_ZH_DIGIT.findall(m.group())) >= MIN_SPOKEN_DIGITS
    ]


def redact(text: str, language: str | None = None) -> Redacted:
    """Replaces personal data in `text` with typed placeholders.

    Args:
        text: A transcript, evidence or prompt text.
        language: ISO 639-1 code of the text; `en` skips the Chinese spoken-digit rule and
            `zh` the English one. None (unknown) applies both.

    Returns:
        The redacted text and the replaced spans of the original, in order.
    """
    found = [RedactedSpan("EMAIL", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    found += _dates(text)
    found += _written_numbers(text)
    found += _letter_joined(text)
    if language != "zh":
        found += _spoken_english(text)
    if language != "en":
        found += _spoken_chinese(text)
    if not found:
        return Redacted(text)
    # Earlier first, then longer first; a span inside one already taken is dropped.
    found.sort(key=lambda s: (s.start, -s.end))
    kept: list[RedactedSpan] = []
    for span in found:
        if kept and span.start < kept[-1].end:
            continue
        kept.append(span)
    out: list[str] = []
    pos = 0
    for span in kept:
        out.append(text[pos : span.start])
        out.append(span.placeholder)
        pos = span.end
    out.append(text[pos:])
    return Redacted("".join(out), tuple(kept))


def redact_words(words: tuple[Word, ...], text: str, language: str | None) -> tuple[Word, ...]:
    """Redacts words in step with their segment text, so a number dictated over several
    words becomes one placeholder word spanning their times (the store keeps these; the
    recorder masks the audio under them).

    Args:
        words: The segment's words with call-clock times.
        text: The segment's text, which the words spell.
        language: As for `redact`.

    Returns:
        The words, each redacted run folded into one word whose text is its placeholder.
    """
    spans = redact(text, language).spans
    out: list[Word] = []
    cursor = 0
    taken: set[int] = set()
    for word in words:
        piece = word.text.strip()
        at = text.find(piece, cursor) if piece else -1
        if at < 0:
            out.append(replace(word, text=redact(word.text, language).text))
            continue
        cursor = at + len(piece)
        hit = next((i for i, s in enumerate(spans) if s.start < cursor and at < s.end), None)
        if hit is None:
            out.append(word)
        elif hit in taken:
            # Later words of one redacted run fold into its placeholder word.
            out[-1] = replace(out[-1], end=word.end)
        else:
            taken.add(hit)
            out.append(replace(word, text=" " + spans[hit].placeholder))
    return tuple(out)


# --- dates ------------------------------------------------------------------------------

_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_UNITS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}  # fmt: skip
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17,
    "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip


def _alt(words) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_SEP = r"[\s-]+"
_MONTH = rf"(?P<month>{_alt(_MONTHS)})\.?"
# A day: 12, 12th, twelfth, twenty-first.
_DAY = (rf"(?P<day>(?:[0-3]?[0-9])(?:st|nd|rd|th)?|(?:(?:twenty|thirty){_SEP})?"
        rf"(?:{_alt(_ORDINALS)}))")
# A year: 1985, nineteen eighty-five, nineteen oh five, two thousand (and) five, twenty twenty.
_UNIT = rf"(?:{_alt(_UNITS)})"
_TWO = rf"(?:(?:{_alt(_TENS)})(?:{_SEP}{_UNIT})?|{_alt(_TEENS)}|oh{_SEP}{_UNIT})"
_YEAR = (rf"(?P<year>(?:19|20)[0-9]{{2}}|nineteen{_SEP}(?:hundred(?:{_SEP}and)?{_SEP})?{_TWO}"
         rf"|nineteen{_SEP}hundred|two{_SEP}thousand(?:{_SEP}(?:and{_SEP})?"
         rf"(?:{_TWO}|{_UNIT}))?|twenty{_SEP}{_TWO})")
_B = r"(?<![A-Za-z0-9])"
_E = r"(?![A-Za-z0-9])"
_OF = r"(?:\s+of)?"
_COMMA = r",?\s+"
_WORD_DATES = (
    # March 12, 1985 / March twelfth nineteen eighty-five
    re.compile(rf"{_B}{_MONTH}\s+(?:the\s+)?{_DAY}{_COMMA}{_YEAR}{_E}", re.IGNORECASE),
    # 12 March 1985 / the 12th of March, 1985
    re.compile(rf"{_B}(?:the\s+)?{_DAY}{_OF}\s+{_MONTH}{_COMMA}{_YEAR}{_E}", re.IGNORECASE),
)
_NUMERIC_DATES = (
    # 12/03/1985, 3.12.1985, 12-03-1985 (day or month first: either way a date)
    re.compile(r"(?<![0-9./-])(?P<a>[0-9]{1,2})(?P<s>[/.-])(?P<b>[0-9]{1,2})(?P=s)"
               r"(?P<year>[0-9]{4})(?![0-9]|[./-][0-9])"),
    # 1985-03-12, 1985/3/12, 1985.03.12
    re.compile(r"(?<![0-9./-])(?P<year>[0-9]{4})(?P<s>[/.-])(?P<a>[0-9]{1,2})(?P=s)"
               r"(?P<b>[0-9]{1,2})(?![0-9]|[./-][0-9])"),
)
_ZH_NUM = "〇零一二三四五六七八九十"
_ZH_DATE = re.compile(
    rf"(?P<year>[0-9]{{4}}|[{_ZH_NUM}]{{4}})\s*年\s*(?P<a>[0-9]{{1,2}}|[{_ZH_NUM}]{{1,3}})\s*月"
    rf"\s*(?P<b>[0-9]{{1,2}}|[{_ZH_NUM}]{{1,3}})\s*[日号號]"
)


def _words_value(words: str) -> int | None:
    """The value of a spoken number up to 99 ("twenty-first" -> 21, "oh five" -> 5)."""
    total = 0
    for word in re.split(r"[\s-]+", words.lower().strip()):
        if word in ("oh", "and", ""):
            continue
        value = _UNITS.get(word) or _TEENS.get(word) or _TENS.get(word) or _ORDINALS.get(word)
        if value is None:
            return None
        total += value
    return total


def _spoken_year(words: str) -> int | None:
    text = words.lower()
    if text[:4].isdigit():
        return int(text[:4])
    parts = re.split(r"[\s-]+", text)
    if parts[0] == "two" and parts[1] == "thousand":
        rest = _words_value(" ".join(parts[2:]))
        return None if rest is None else 2000 + rest
    head = 19 if parts[0] == "nineteen" else 20
    tail = [p for p in parts[1:] if p != "hundred"]
    value = _words_value(" ".join(tail)) if tail else 0
    return None if value is None else head * 100 + value


def _day_value(words: str) -> int | None:
    text = words.lower()
    digits = text.rstrip("stndrh")
    return int(digits) if digits.isdigit() else _words_value(text)


def _zh_value(text: str) -> int:
    if text.isascii():
        return int(text)
    digits = {ch: i for i, ch in enumerate("零一二三四五六七八九")} | {"〇": 0}
    if "十" in text:  # 十二 = 12, 二十 = 20, 二十一 = 21
        tens, _, units = text.partition("十")
        return (digits.get(tens, 1) if tens else 1) * 10 + (digits.get(units, 0) if units else 0)
    return int("".join(str(digits.get(ch, 0)) for ch in text))


def _valid_date(year: int | None, a: int | None, b: int | None) -> bool:
    """A plausible date of birth: year 1900-this year, day and month in range (a and b are
    day and month in either order)."""
    import datetime

    if year is None or a is None or b is None or not 1900 <= year <= datetime.date.today().year:
        return False
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)


def _dates(text: str) -> list[RedactedSpan]:
    spans = []
    for pattern in _WORD_DATES:
        for m in pattern.finditer(text):
            if _valid_date(_spoken_year(m["year"]), _day_value(m["day"]),
                           _MONTHS[m["month"].lower()]):
                start = m.start()
                if text[start : start + 4].lower() == "the ":
                    start += 4  # the article is no personal data: "the [DATE]"
                spans.append(RedactedSpan("DATE", start, m.end()))
    for pattern in _NUMERIC_DATES:
        for m in pattern.finditer(text):
            if _valid_date(int(m["year"]), int(m["a"]), int(m["b"])):
                spans.append(RedactedSpan("DATE", m.start(), m.end()))
    for m in _ZH_DATE.finditer(text):
        # A year is read digit by digit (一九八五); 十 in it is no year.
        year = None if "十" in m["year"] else _zh_value(m["year"])
        if _valid_date(year, _zh_value(m["a"]), _zh_value(m["b"])):
            spans.append(RedactedSpan("DATE", m.start(), m.end()))
    return spans
