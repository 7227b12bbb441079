"""Message catalogues: one TOML file per language, Korean the reference.

Handlers never hold member-facing strings; they ask for a key in the person's language.
"""

from __future__ import annotations

import string
import tomllib
from datetime import date
from functools import cache
from importlib import resources

LANGUAGES = ("ko", "en", "zh")
# The reference catalogue: every other one has the same keys.
DEFAULT_LANGUAGE = "ko"
# For a client in a language we do not offer: answering such a stranger in Korean would tell
# them who the bot is for.
STRANGER_LANGUAGE = "en"
# Shown in each language's own script on the picker, never translated.
LANGUAGE_NAMES = {"ko": "한국어", "en": "English", "zh": "中文"}


@cache
def catalogue(language: str) -> dict[str, str]:
    """The whole catalogue of ``language`` (cached; files ship with the package)."""
    if language not in LANGUAGES:
        raise KeyError(f"no catalogue for {language!r}")
    text = resources.files(__package__).joinpath(f"{language}.toml").read_text("utf-8")
    data = tomllib.loads(text)
    if not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"catalogue {language} has a non-string entry")
    return data


def language_from_telegram(code: str | None) -> str:
    """Best guess from Telegram's ``language_code`` (e.g. "ko", "zh-hans", "en-US"); English
    for any language we do not offer."""
    if code:
        prefix = code.split("-")[0].lower()
        if prefix in LANGUAGES:
            return prefix
    return STRANGER_LANGUAGE


# Korean particles change with the sound before them: "맑은 구름 27이에요" but "푸른 별
# 12예요". A catalogue writes the particle as the placeholder's format spec, in its form
# after a consonant -- ``{pseudonym:이에요}``, ``{role:으로}`` -- and the text gets the form
# that fits the value: (after a final consonant, after a vowel).
PARTICLES = {
    "이에요": ("이에요", "예요"),
    "이라고": ("이라고", "라고"),
    "으로": ("으로", "로"),
    "을": ("을", "를"),
    "이": ("이", "가"),
    "은": ("은", "는"),
    "과": ("과", "와"),
}
# How a final digit is read in Sino-Korean: 0 영, 1 일, 2 이, 3 삼, 4 사, 5 오, 6 육, 7 칠,
# 8 팔, 9 구 -- whether it ends in a consonant, and whether that consonant is ㄹ.
_DIGIT_FINAL = {"0": "ㅇ", "1": "ㄹ", "3": "ㅁ", "6": "ㄱ", "7": "ㄹ", "8": "ㄹ"}


def final_sound(word: str) -> str | None:
    """The final consonant of the last spoken syllable of ``word`` ("ㄹ", another, or None
    for a vowel). Latin letters are read the English way, roughly."""
    last = word.rstrip()[-1:] or "a"
    if "가" <= last <= "힣":
        tail = (ord(last) - ord("가")) % 28
        return None if tail == 0 else ("ㄹ" if tail == 8 else "ㄱ")
    if last.isdigit():
        return _DIGIT_FINAL.get(last)
    if last.lower() in "aeiouy":
        return None
    return "ㄹ" if last.lower() == "l" else "ㄱ"


def with_particle(word: str, particle: str) -> str:
    after_consonant, after_vowel = PARTICLES[particle]
    sound = final_sound(word)
    if particle == "으로" and sound == "ㄹ":
        return word + after_vowel  # 서울로, 칠로
    return word + (after_vowel if sound is None else after_consonant)


class _Formatter(string.Formatter):
    def format_field(self, value: object, format_spec: str) -> str:
        if format_spec in PARTICLES:
            return with_particle(str(value), format_spec)
        return str(super().format_field(value, format_spec))


_FORMATTER = _Formatter()


def t(language: str, key: str, /, **values: object) -> str:
    """The text for ``key`` in ``language`` (falling back to Korean), filled with ``values``."""
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    text = catalogue(lang).get(key) or catalogue(DEFAULT_LANGUAGE)[key]
    return _FORMATTER.format(text, **values) if values else text


def day_text(language: str, day: date) -> str:
    """A calendar day as people write it ("3월 12일", "12 March", "3月12日"), with the year
    only when it is not this year's."""
    months = t(language, "month_names").split()
    text = t(language, "day_format", day=day.day, month=day.month, month_name=months[day.month - 1])
    if day.year != date.today().year:
        text = t(language, "day_with_year", year=day.year, day=text)
    return text
