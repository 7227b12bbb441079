"""Telegram text formatting as the Bot API applies it: parse modes, entities, trimming.

The parsers follow the behaviour of tdlib (which backs the Bot API server) closely enough
that the typical mistakes of a bot -- an unescaped ``<`` in HTML, an unescaped ``.`` in
MarkdownV2, an unclosed tag -- fail here with the same ``can't parse entities`` errors that
Telegram returns.  Entity offsets and lengths are in UTF-16 code units, like Telegram's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]

__all__ = [
    "EntityParseError",
    "command_entities",
    "parse_text",
    "trim_formatted",
    "utf16_len",
]


class EntityParseError(ValueError):
    """The text could not be parsed in the requested parse mode (``can't parse entities``)."""


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit of Telegram entity offsets)."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


@dataclass
class _Builder:
    """Accumulates the plain text and the UTF-16 position while parsing."""

    parts: list[str] = field(default_factory=list)
    pos: int = 0

    def add(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.pos += utf16_len(chunk)

    def text(self) -> str:
        return "".join(self.parts)


def _entity(kind: str, offset: int, length: int, **extra: Any) -> JSONDict:
    entity: JSONDict = {"type": kind, "offset": offset, "length": length}
    entity.update({key: value for key, value in extra.items() if value is not None})
    return entity


def _sorted(entities: list[JSONDict]) -> list[JSONDict]:
    return sorted(
        (e for e in entities if e["length"] > 0), key=lambda e: (e["offset"], -e["length"])
    )


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_HTML_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_NUMERIC_ENTITY = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
_NAMED_ENTITY = re.compile(r"&([a-zA-Z]{2,6});")


def _html_entity_at(text: str, index: int) -> tuple[str, int] | None:
    match = _NUMERIC_ENTITY.match(text, index)
    if match:
        code = int(match.group(1), 16) if match.group(1) else int(match.group(2))
        if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            return chr(code), match.end() - index
        return None
    match = _NAMED_ENTITY.match(text, index)
    if match and match.group(1) in _NAMED_ENTITIES:
        return _NAMED_ENTITIES[match.group(1)], match.end() - index
    return None


def _html_unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "&":
            decoded = _html_entity_at(value, i)
            if decoded is not None:
                out.append(decoded[0])
                i += decoded[1]
                continue
        out.append(value[i])
        i += 1
    return "".join(out)


@dataclass
class _OpenTag:
    tag: str
    kind: str | None
    start: int
    attrs: dict[str, str]


def _is_tag_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in "-_")


def parse_html(text: str) -> tuple[str, list[JSONDict]]:
    """Parse Telegram-flavoured HTML into plain text and entities."""
    out = _Builder()
    stack: list[_OpenTag] = []
    entities: list[JSONDict] = []
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        if char == "&":
            decoded = _html_entity_at(text, i)
            if decoded is not None:
                out.add(decoded[0])
                i += decoded[1]
                continue
        if char != "<":
            out.add(char)
            i += 1
            continue
        begin = i
        i += 1
        if i < size and text[i] == "/":
            i += 1
            end = i
            while end < size and _is_tag_char(text[end]):
                end += 1
            tag = text[i:end].lower()
            while end < size and text[end] in " \t\r\n":
                end += 1
            if end >= size or text[end] != ">":
                raise EntityParseError(
                    f"Unclosed end tag at byte offset {_byte_offset(text, begin)}"
                )
            if not stack:
                raise EntityParseError(
                    f"Unexpected end tag at byte offset {_byte_offset(text, begin)}"
                )
            top = stack.pop()
            if tag != top.tag:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{top.tag}>", found "</{tag}>"'
                )
            entities.extend(_close_html_tag(top, out.pos, stack))
            i = end + 1
            continue
        end = i
        while end < size and _is_tag_char(text[end]):
            end += 1
        tag = text[i:end].lower()
        if tag not in _HTML_TAGS:
            raise EntityParseError(
                f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
            )
        attrs, end = _parse_html_attributes(text, end, tag, begin)
        if tag == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError('Tag "span" must have class "tg-spoiler"')
        stack.append(_OpenTag(tag=tag, kind=_HTML_TAGS[tag], start=out.pos, attrs=attrs))
        i = end + 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    return out.text(), _sorted(entities)


def _parse_html_attributes(
    text: str, index: int, tag: str, begin: int
) -> tuple[dict[str, str], int]:
    attrs: dict[str, str] = {}
    size = len(text)
    while True:
        while index < size and text[index] in " \t\r\n":
            index += 1
        if index >= size:
            raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        if text[index] == ">":
            return attrs, index
        if text[index] == "/" and index + 1 < size and text[index + 1] == ">":
            raise EntityParseError(
                f'Unsupported start tag "{tag}/" at byte offset {_byte_offset(text, begin)}'
            )
        name_end = index
        while name_end < size and _is_tag_char(text[name_end]):
            name_end += 1
        if name_end == index:
            offset = _byte_offset(text, begin)
            raise EntityParseError(
                f'Empty attribute name in the tag "{tag}" at byte offset {offset}'
            )
        name = text[index:name_end].lower()
        index = name_end
        while index < size and text[index] in " \t\r\n":
            index += 1
        value = ""
        if index < size and text[index] == "=":
            index += 1
            while index < size and text[index] in " \t\r\n":
                index += 1
            if index >= size:
                raise EntityParseError(
                    f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                )
            quote = text[index]
            if quote in "'\"":
                close = text.find(quote, index + 1)
                if close < 0:
                    raise EntityParseError(
                        f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                    )
                value = _html_unescape(text[index + 1 : close])
                index = close + 1
            else:
                value_end = index
                while value_end < size and text[value_end] not in " \t\r\n>":
                    value_end += 1
                value = _html_unescape(text[index:value_end])
                index = value_end
        attrs[name] = value


def _close_html_tag(top: _OpenTag, end: int, stack: list[_OpenTag]) -> list[JSONDict]:
    length = end - top.start
    if top.kind == "text_link":
        href = top.attrs.get("href", "").strip()
        if not href:
            return []
        return [_entity("text_link", top.start, length, url=href)]
    if top.kind == "code":
        language = top.attrs.get("class", "")
        if language.startswith("language-") and stack and stack[-1].kind == "pre":
            stack[-1].attrs["language"] = language.removeprefix("language-")
            return []
        return [_entity("code", top.start, length)]
    if top.kind == "pre":
        return [_entity("pre", top.start, length, language=top.attrs.get("language") or None)]
    if top.kind == "blockquote":
        kind = "expandable_blockquote" if "expandable" in top.attrs else "blockquote"
        return [_entity(kind, top.start, length)]
    if top.kind == "custom_emoji":
        emoji_id = top.attrs.get("emoji-id")
        if not emoji_id:
            return []
        return [_entity("custom_emoji", top.start, length, custom_emoji_id=emoji_id)]
    assert top.kind is not None
    return [_entity(top.kind, top.start, length)]


# --------------------------------------------------------------------------------------------
# MarkdownV2
# --------------------------------------------------------------------------------------------

_V2_RESERVED = "_*[]()~`>#+-=|{}.!"
_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


@dataclass
class _OpenV2:
    kind: str
    start: int
    byte_offset: int
    argument: str | None = None


def _v2_reserved_error(char: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


def _at(text: str, index: int) -> str:
    return text[index] if 0 <= index < len(text) else ""


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Parse MarkdownV2 like tdlib's ``parse_markdown_v2``."""
    out = _Builder()
    stack: list[_OpenV2] = []
    entities: list[JSONDict] = []
    quote_start: int | None = None
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        at_line_start = i == 0 or text[i - 1] == "\n"
        if char == "\\" and 0 < ord(_at(text, i + 1) or "\x00") <= 126:
            out.add(text[i + 1])
            i += 2
            continue
        if char == ">" and at_line_start and not stack:
            if quote_start is None:
                quote_start = out.pos
            i += 1
            continue
        if char == "\n" and quote_start is not None and _at(text, i + 1) != ">":
            entities.append(_entity("blockquote", quote_start, out.pos - quote_start))
            quote_start = None
        reserved = "`" if stack and stack[-1].kind in ("code", "pre") else _V2_RESERVED
        if char not in reserved:
            out.add(char)
            i += 1
            continue
        top = stack[-1].kind if stack else None
        nxt = _at(text, i + 1)
        is_end = (
            (top == "bold" and char == "*")
            or (top == "italic" and char == "_" and nxt != "_")
            or (top == "code" and char == "`")
            or (top == "pre" and char == "`" and nxt == "`" and _at(text, i + 2) == "`")
            or (top in ("text_link", "custom_emoji") and char == "]")
            or (top == "underline" and char == "_" and nxt == "_")
            or (top == "strikethrough" and char == "~")
            or (top == "spoiler" and char == "|" and nxt == "|")
        )
        if not is_end:
            begin_byte = _byte_offset(text, i)
            argument: str | None = None
            if char == "_":
                kind = "underline" if nxt == "_" else "italic"
                i += 1 if nxt == "_" else 0
            elif char == "*":
                kind = "bold"
            elif char == "~":
                kind = "strikethrough"
            elif char == "|":
                if nxt != "|":
                    raise _v2_reserved_error(char)
                kind, i = "spoiler", i + 1
            elif char == "[":
                kind = "text_link"
            elif char == "!":
                if nxt != "[":
                    raise _v2_reserved_error(char)
                kind, i = "custom_emoji", i + 1
            elif char == "`":
                if nxt == "`" and _at(text, i + 2) == "`":
                    kind = "pre"
                    i += 3
                    lang_end = i
                    while (
                        lang_end < size and not text[lang_end].isspace() and text[lang_end] != "`"
                    ):
                        lang_end += 1
                    if i != lang_end and lang_end < size and text[lang_end] != "`":
                        argument = text[i:lang_end]
                        i = lang_end
                    if _at(text, i) in ("\n", "\r"):
                        pair = _at(text, i + 1)
                        i += 2 if pair in ("\n", "\r") and pair != text[i] else 1
                    i -= 1
                else:
                    kind = "code"
            else:
                raise _v2_reserved_error(char)
            stack.append(
                _OpenV2(kind=kind, start=out.pos, byte_offset=begin_byte, argument=argument)
            )
            i += 1
            continue
        opened = stack.pop()
        length = out.pos - opened.start
        if opened.kind in ("text_link", "custom_emoji"):
            url = ""
            if nxt == "(":
                j = i + 2
                url_chars: list[str] = []
                while j < size and text[j] != ")":
                    if text[j] == "\\" and 0 < ord(_at(text, j + 1) or "\x00") <= 126:
                        j += 1
                    url_chars.append(text[j])
                    j += 1
                if j >= size:
                    raise EntityParseError(
                        f"Can't find end of a url at byte offset {_byte_offset(text, i + 2)}"
                    )
                url = "".join(url_chars)
                i = j
            if opened.kind == "custom_emoji":
                match = re.fullmatch(r"tg://emoji\?id=(\d+)", url)
                if not match:
                    raise EntityParseError("Custom emoji URL must have an emoji identifier")
                entities.append(
                    _entity("custom_emoji", opened.start, length, custom_emoji_id=match.group(1))
                )
            elif url:
                entities.append(_entity("text_link", opened.start, length, url=url))
        elif opened.kind == "pre":
            entities.append(_entity("pre", opened.start, length, language=opened.argument))
            i += 2
        else:
            entities.append(_entity(opened.kind, opened.start, length))
            if opened.kind in ("underline", "spoiler"):
                i += 1
        i += 1
    if stack:
        opened = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_V2_NAMES[opened.kind]} entity at byte offset {opened.byte_offset}"
        )
    if quote_start is not None:
        entities.append(_entity("blockquote", quote_start, out.pos - quote_start))
    return out.text(), _sorted(entities)


# --------------------------------------------------------------------------------------------
# Legacy Markdown
# --------------------------------------------------------------------------------------------


def parse_markdown(text: str) -> tuple[str, list[JSONDict]]:
    """Parse legacy Markdown like tdlib's ``parse_markdown``."""
    out = _Builder()
    entities: list[JSONDict] = []
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        if char == "\\" and _at(text, i + 1) in ("_", "*", "`", "["):
            out.add(text[i + 1])
            i += 2
            continue
        if char not in "_*`[":
            out.add(char)
            i += 1
            continue
        begin = i
        end_char = "]" if char == "[" else char
        is_pre = False
        language: str | None = None
        i += 1
        if char == "`" and _at(text, i) == "`" and _at(text, i + 1) == "`":
            i += 2
            is_pre = True
            lang_end = i
            while lang_end < size and not text[lang_end].isspace() and text[lang_end] != "`":
                lang_end += 1
            if i != lang_end and lang_end < size and text[lang_end] != "`":
                language = text[i:lang_end]
                i = lang_end
            if _at(text, i) in ("\n", "\r"):
                pair = _at(text, i + 1)
                i += 2 if pair in ("\n", "\r") and pair != text[i] else 1
        start = out.pos
        while i < size and (
            text[i] != end_char or (is_pre and not (_at(text, i + 1) == "`" == _at(text, i + 2)))
        ):
            out.add(text[i])
            i += 1
        if i >= size:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}"
            )
        length = out.pos - start
        if char == "[":
            if _at(text, i + 1) == "(":
                url_begin = i + 2
                close = text.find(")", url_begin)
                if close < 0:
                    raise EntityParseError(
                        f"Can't find end of a url at byte offset {_byte_offset(text, url_begin)}"
                    )
                url = text[url_begin:close]
                i = close
            else:
                url = ""
            if url and length:
                entities.append(_entity("text_link", start, length, url=url))
        elif length:
            if char == "_":
                entities.append(_entity("italic", start, length))
            elif char == "*":
                entities.append(_entity("bold", start, length))
            elif is_pre:
                entities.append(_entity("pre", start, length, language=language))
            else:
                entities.append(_entity("code", start, length))
        if is_pre:
            i += 2
        i += 1
    return out.text(), _sorted(entities)


# --------------------------------------------------------------------------------------------
# Common
# --------------------------------------------------------------------------------------------


def trim_formatted(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Strip leading/trailing whitespace like Telegram does, keeping entities consistent."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    new_len = utf16_len(stripped)
    result: list[JSONDict] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, new_len)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


def parse_text(
    text: str, parse_mode: str | None, entities: list[JSONDict] | None = None
) -> tuple[str, list[JSONDict]]:
    """Apply ``parse_mode`` (or explicit ``entities``) and Telegram's whitespace trimming.

    Raises:
        EntityParseError: the text is not valid in that parse mode.
        ValueError: unsupported parse mode (message ``unsupported parse_mode``).
    """
    mode = (parse_mode or "").strip().lower()
    if entities is not None or not mode:
        plain, found = text, list(entities or [])
    elif mode == "html":
        plain, found = parse_html(text)
    elif mode == "markdownv2":
        plain, found = parse_markdown_v2(text)
    elif mode == "markdown":
        plain, found = parse_markdown(text)
    else:
        raise ValueError("unsupported parse_mode")
    return trim_formatted(plain, found)


_COMMAND = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>@])")
_MENTION = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{4,32}(?![\w@])")
_URL = re.compile(r"(?<![\w/@])https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")


def command_entities(text: str) -> list[JSONDict]:
    """Entities Telegram attaches to a user's message: bot commands, mentions and URLs."""
    found: list[JSONDict] = []
    for pattern, kind in ((_COMMAND, "bot_command"), (_MENTION, "mention"), (_URL, "url")):
        for match in pattern.finditer(text):
            offset = utf16_len(text[: match.start()])
            found.append(_entity(kind, offset, utf16_len(match.group(0))))
    return _sorted(found)
