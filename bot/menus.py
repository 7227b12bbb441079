"""The command menu Telegram shows under the "/" button, per chat and per role.

Menus are set only for enrolled chats (chat scope), never globally: a stranger who opens the
bot sees no commands, so the menu cannot tell them what the bot is for. The chat upkeep in
bot/chat.py keeps each chat's menu in line with the database (set for active people in
their language, removed from revoked and erased ones), so a failed call is simply retried.
"""

from __future__ import annotations

from bot.i18n import t
from storage.models import Role

MEMBER_COMMANDS = (
    "menu",
    "checkin",
    "ask",
    "notices",
    "clear",
    "settings",
    "language",
    "cancel",
)
_STAFF_FIRST = ("cases", "due", "schedule", "broadcast", "broadcasts", "tag", "invite", "invites")
_STAFF_LAST = ("name", "language", "cancel")
CASEWORKER_COMMANDS = _STAFF_FIRST + _STAFF_LAST
ADMIN_COMMANDS = (*_STAFF_FIRST, "revoke", "forget", *_STAFF_LAST)


def command_names(role: Role) -> tuple[str, ...]:
    if role is Role.MEMBER:
        return MEMBER_COMMANDS
    return ADMIN_COMMANDS if role is Role.ADMIN else CASEWORKER_COMMANDS


def menu_key(role: str, language: str) -> str:
    """What ``people.menu`` records once a chat's menu is set."""
    return f"{role}:{language}"


def commands_for(role: Role, language: str) -> list[tuple[str, str]]:
    """(command, description) pairs in ``language``."""
    return [(name, t(language, f"command_{name}")) for name in command_names(role)]
