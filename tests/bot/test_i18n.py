"""Catalogues: every language says everything, with the same placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bot.i18n import LANGUAGES, catalogue, language_from_telegram, t

ROOT = Path(__file__).resolve().parents[2]


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalogue_has_every_key_with_the_same_placeholders(language: str) -> None:
    reference, other = catalogue("ko"), catalogue(language)
    assert other.keys() == reference.keys()
    for key, text in reference.items():
        assert placeholders(other[key]) == placeholders(text), key
        assert other[key].strip(), key


def test_no_member_facing_text_in_handlers() -> None:
    # Member text lives in catalogues: no Hangul or CJK literals in the handlers or app.
    cjk = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
    for path in [*(ROOT / "handlers").glob("*.py"), ROOT / "bot" / "app.py"]:
        assert not cjk.search(path.read_text("utf-8")), path


def test_neutral_line_names_no_organisation() -> None:
    for language in LANGUAGES:
        line = t(language, "stranger").lower()
        for word in ("saferelay", "refugee", "탈북", "난민", "难民", "caseworker"):
            assert word not in line


def test_language_guess_from_telegram() -> None:
    assert language_from_telegram("zh-hans") == "zh"
    assert language_from_telegram("en-US") == "en"
    # A language we do not offer gets English: Korean would tell a stranger whom the bot
    # is for.
    assert language_from_telegram("ru") == "en"
    assert language_from_telegram(None) == "en"
