"""Message catalogues: one TOML file per language, Korean the reference.

Handlers never hold member-facing strings; they ask for a key in the person's language.
"""

from __future__ import annotations

import tomllib
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


def t(language: str, key: str, /, **values: object) -> str:
    """The text for ``key`` in ``language`` (falling back to Korean), filled with ``values``."""
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    text = catalogue(lang).get(key) or catalogue(DEFAULT_LANGUAGE)[key]
    return text.format(**values) if values else text
