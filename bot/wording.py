"""Words that must never appear on a member's screen: a phone may be read by someone else,
and any of these tells them who the member is. The catalogue tests check every member text
against this list, and a broadcast's preview warns staff when their notice uses one."""

from __future__ import annotations

MEMBER_SCREEN_WORDS = (
    "refugee",
    "defector",
    "caseworker",
    "repatriat",
    "north korea",
    "saferelay",
    "난민",
    "탈북",
    "담당자",
    "송환",
    "북한",
    "难民",
    "脱北",
    "遣返",
    "朝鲜",
    "负责人",
)


def telling_words(text: str) -> list[str]:
    """The listed words ``text`` contains (case ignored), in list order."""
    lowered = text.casefold()
    return [word for word in MEMBER_SCREEN_WORDS if word in lowered]
