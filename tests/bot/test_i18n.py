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


@pytest.mark.parametrize(
    ("word", "particle", "expected"),
    [
        ("맑은 구름 27", "이에요", "맑은 구름 27이에요"),
        ("맑은 구름 12", "이에요", "맑은 구름 12예요"),
        ("푸른 별", "이라고", "푸른 별이라고"),
        ("고요한 바다", "이라고", "고요한 바다라고"),
        ("관리자", "으로", "관리자로"),
        ("서울", "으로", "서울로"),
        ("Calm Otter 17", "으로", "Calm Otter 17로"),
        ("Calm Otter 13", "으로", "Calm Otter 13으로"),
        ("Mina", "을", "Mina를"),
    ],
)
def test_korean_particles_follow_the_sound_before_them(
    word: str, particle: str, expected: str
) -> None:
    from bot.i18n import with_particle

    assert with_particle(word, particle) == expected


def test_korean_reads_as_one_warm_voice() -> None:
    """해요체 throughout (no 합쇼체 -니다), everyday words (단어, not 낱말), no bare
    fragments, and no space between a placeholder or command and its particle."""
    for key, text in catalogue("ko").items():
        assert "니다" not in text, key
        assert "낱말" not in text, key
        assert not re.search(r"\} (이에요|예요|을|를|이|가|은|는|으로|로)\b", text), key
        assert not re.search(r"/[a-z]+ (을|를)", text), key
        # a bare noun with a full stop ("설정.") is a fragment; "저장했어요." is a sentence
        assert not re.search(r"(^|\n)[^ \n.]+[^요]\.", text), key


def test_the_threat_question_asks_about_being_sent_back_without_naming_anywhere() -> None:
    for language in LANGUAGES:
        question = t(language, "checkin_threat").lower()
        for telling in ("north", "korea", "china", "북한", "중국", "朝鲜", "中国", "송환", "遣返"):
            assert telling not in question, (language, telling)
    assert "돌려보내" in t("ko", "checkin_threat")
    assert "sent back" in t("en", "checkin_threat")


@pytest.mark.parametrize(("language", "script"), [("ko", r"[가-힣]"), ("zh", r"[一-鿿]")])
def test_pseudonyms_come_in_the_members_language(language: str, script: str) -> None:
    from crypto.pseudonyms import new_pseudonym

    for _ in range(50):
        name = new_pseudonym(language)
        assert re.search(script, name), name
        assert re.search(r" \d\d$", name), name
