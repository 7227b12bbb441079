"""Plain data records of the fake Bot API: calls and chat messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]

__all__ = ["MEDIA_KINDS", "ApiError", "Call", "ChatMessage", "JSONDict"]

MEDIA_KINDS = ("sticker", "photo", "voice", "document", "location", "contact")


class ApiError(Exception):
    """An error answer of the Bot API (``{"ok": false, ...}``)."""

    def __init__(
        self,
        status: int,
        description: str,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def forbidden(description: str) -> ApiError:
    return ApiError(403, f"Forbidden: {description}")


@dataclass
class Call:
    """One HTTP request to the Bot API, as received.

    ``params`` are decoded: JSON-encoded form values (reply_markup, entities, chat_id,
    booleans, ...) are turned back into Python values, text-like values stay strings.
    ``status`` is the HTTP status answered (``None`` while in flight or when the connection
    was dropped), ``description`` the error description for failed calls, ``injected`` tells
    whether the answer came from :meth:`FakeBotApi.fail_next`/``slow_next``.
    """

    method: str
    params: dict[str, Any]
    at: float
    status: int | None = None
    description: str | None = None
    injected: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def summary(self) -> str:
        interesting = {
            key: value
            for key, value in self.params.items()
            if key in ("chat_id", "message_id", "text", "offset", "timeout", "data", "message_ids")
        }
        outcome = "in flight" if self.status is None else str(self.status)
        if self.description:
            outcome += f" {self.description}"
        if self.injected:
            outcome += " (injected)"
        return f"{self.method}({interesting}) -> {outcome}"


@dataclass(eq=False)
class ChatMessage:
    """A message in a private chat, from either side.

    Instances are live: the fake updates them in place when the bot edits or deletes the
    message, so a reference kept by a test always shows the current state.
    """

    message_id: int
    chat_id: int
    from_bot: bool
    text: str | None
    date: int
    reply_markup: JSONDict | None = None
    protect_content: bool = False
    reply_to_message_id: int | None = None
    deleted: bool = False
    kind: str = "text"
    entities: list[JSONDict] = field(default_factory=list)
    parse_mode: str | None = None
    edit_date: int | None = None
    edit_count: int = 0
    disable_notification: bool = False
    link_preview_options: JSONDict | None = None
    payload: JSONDict = field(default_factory=dict)
    """Extra Telegram fields of the message, e.g. ``{"photo": [...]}`` or ``forward_origin``."""
    sender: JSONDict = field(default_factory=dict, repr=False)
    chat: JSONDict = field(default_factory=dict, repr=False)
    reply_to: ChatMessage | None = field(default=None, repr=False)

    def inline_keyboard(self) -> list[list[JSONDict]]:
        """The raw rows of the inline keyboard (empty when there is none)."""
        if not self.reply_markup:
            return []
        rows = self.reply_markup.get("inline_keyboard")
        return rows if isinstance(rows, list) else []

    def buttons(self) -> list[tuple[str, str]]:
        """``(text, callback_data)`` of the inline keyboard's callback buttons, row-major.

        Buttons without ``callback_data`` (URL buttons, ...) are not listed; see
        :meth:`inline_keyboard` for the raw rows.
        """
        return [
            (str(button.get("text", "")), str(button["callback_data"]))
            for row in self.inline_keyboard()
            for button in row
            if isinstance(button, dict) and "callback_data" in button
        ]

    def to_dict(self, *, with_reply: bool = True) -> JSONDict:
        """The message as the Bot API serialises it."""
        message: JSONDict = {
            "message_id": self.message_id,
            "from": dict(self.sender),
            "chat": dict(self.chat),
            "date": self.date,
        }
        if self.edit_date is not None:
            message["edit_date"] = self.edit_date
        if with_reply and self.reply_to is not None and not self.reply_to.deleted:
            message["reply_to_message"] = self.reply_to.to_dict(with_reply=False)
        message.update(self.payload)
        if self.text is not None:
            message["text"] = self.text
            if self.entities:
                message["entities"] = [dict(entity) for entity in self.entities]
        if self.protect_content:
            message["has_protected_content"] = True
        if self.inline_keyboard():
            message["reply_markup"] = {"inline_keyboard": self.inline_keyboard()}
        return message

    def describe(self) -> str:
        """One line for transcripts and assertion messages."""
        who = "bot " if self.from_bot else "user"
        body = repr(self.text) if self.text is not None else f"<{self.kind}>"
        line = f"#{self.message_id} {who}: {body}"
        if self.reply_to_message_id is not None:
            line += f" (reply to #{self.reply_to_message_id})"
        buttons = self.buttons()
        if buttons:
            line += " [" + " | ".join(f"{text}->{data}" for text, data in buttons) + "]"
        elif self.reply_markup and "keyboard" in self.reply_markup:
            line += " [reply keyboard]"
        if self.edit_count:
            line += f" (edited x{self.edit_count})"
        if self.deleted:
            line += " (deleted)"
        return line
