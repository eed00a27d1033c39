"""Redaction of dictated numbers in which the recogniser misheard one digit as a lone letter.

`base` decoding the sample call's account number "four seven two nine eight three" wrote
"472-I-183" on one input (the batched path with the per-utterance path's padding), and the
number left redaction in clear: a letter ended the run of digits, and neither half was long
enough to be a number. A lone letter between the digits of a run is a misheard digit, not
the end of the number.
"""

from __future__ import annotations

import time

import pytest

from qa.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes, it is 472-I-183.", "Yes, it is [NUMBER]."),
        ("it is 472 I 183", "it is [NUMBER]"),
        ("account 472-O-983 please", "account [NUMBER] please"),
        ("47-29-I-83", "[NUMBER]"),
        ("four seven two I nine eight three", "[NUMBER]"),
        ("four-seven-two-O-nine-eight", "[NUMBER]"),
        # The number after a decimal is its own: the decimal is kept.
        ("the ratio 3.5 a 123456", "the ratio 3.5 a [NUMBER]"),
    ],
)
def test_digit_run_split_by_a_lone_letter_is_one_number(text: str, expected: str) -> None:
    assert redact(text, "en").text == expected


@pytest.mark.parametrize(
    "text",
    [
        "I paid 500 a month and 600 a year",  # the letter is followed by a word
        "room 12 B 3",  # too few digits for a dictated number
        "one I two",
        "I have 2 kids, I think",
        "pages 10 to 12",
        "1,000 a day",
        "version 2.1 a 3.4",
    ],
)
def test_letters_among_ordinary_numbers_are_kept(text: str) -> None:
    assert redact(text, "en").text == text


def test_lone_letters_keep_redaction_linear() -> None:
    """A repetition loop of digits and letters ("1-I-" x 2,000) is one number, found in
    milliseconds; the limit is far above that, so only a quadratic scan fails it."""
    text = "1-I-" * 2000 + "1"
    started = time.perf_counter()
    assert redact(text, "en").text == "[NUMBER]"
    assert time.perf_counter() - started < 2.0
