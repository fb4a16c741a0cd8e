"""Syntax highlighting for the PDF's code blocks: Pygments tokens as coloured runs, line by line.

The language comes from a fenced block's info string (```python) or from the file a tool works
on (Write, Edit, Read: its extension); anything else stays plain. Only the token colours of one
light Pygments style are used (the monospace font has one face). Lexers are looked up once per
name or extension and kept for the process.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Final

from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.lexers.special import TextLexer
from pygments.styles import get_style_by_name
from pygments.token import _TokenType
from pygments.util import ClassNotFound

Colour = tuple[int, int, int]
Run = tuple[Colour, str]
Line = list[Run]

STYLE: Final = get_style_by_name("default")
#: a file path's extension, for the lexer lookup (the name itself is not needed)
_EXTENSION: Final = re.compile(r"(\.[A-Za-z0-9_+-]{1,12})$")
_LEXER_OPTIONS: Final = {"stripnl": False, "stripall": False, "ensurenl": False}


@cache
def lexer_for_language(name: str) -> Lexer | None:
    """The lexer a fence's info string names (`python`, `ts`, `bash`...), None for plain text
    or a name Pygments does not know."""
    name = name.strip().lower()
    if not name or name in {"text", "plain", "plaintext", "txt", "none"}:
        return None
    try:
        lexer = get_lexer_by_name(name, **_LEXER_OPTIONS)
    except ClassNotFound:
        return None
    return None if isinstance(lexer, TextLexer) else lexer


def lexer_for_path(path: str) -> Lexer | None:
    """The lexer for a file by its extension (`src/app.tsx`), None when Pygments knows none."""
    match = _EXTENSION.search(path.rsplit("/", 1)[-1])
    special = path.rsplit("/", 1)[-1] if match is None else ""
    return _lexer_for_suffix(match.group(1).lower() if match else special)


@cache
def _lexer_for_suffix(suffix: str) -> Lexer | None:
    if not suffix:
        return None
    try:
        lexer = get_lexer_for_filename(f"file{suffix}" if suffix.startswith(".") else suffix,
                                       None, **_LEXER_OPTIONS)
    except ClassNotFound:
        return None
    return None if isinstance(lexer, TextLexer) else lexer


@cache
def _colour(token: _TokenType, default: Colour) -> Colour:
    """The style's colour for a token type (a type the style does not name takes its parent's,
    as Pygments' own formatters do), `default` where the style sets none."""
    while not STYLE.styles_token(token) and token.parent is not None:
        token = token.parent
    hex_colour = STYLE.style_for_token(token).get("color") if STYLE.styles_token(token) else ""
    if not hex_colour:
        return default
    return (int(hex_colour[0:2], 16), int(hex_colour[2:4], 16), int(hex_colour[4:6], 16))


def coloured_lines(text: str, lexer: Lexer | None, default: Colour) -> list[Line]:
    """`text` as lines of (colour, text) runs; adjacent runs of one colour are joined. Without
    a lexer each line is one run in `default`."""
    if lexer is None:
        return [[(default, line)] if line else [] for line in text.split("\n")]
    lines: list[Line] = [[]]
    for token, value in lexer.get_tokens(text):
        colour = _colour(token, default)
        pieces = value.split("\n")
        for index, piece in enumerate(pieces):
            if index:
                lines.append([])
            if not piece:
                continue
            line = lines[-1]
            if line and line[-1][0] == colour:
                line[-1] = (colour, line[-1][1] + piece)
            else:
                line.append((colour, piece))
    return lines


#: Claude Code's Read output: each line behind its number and an arrow (`     12→code`)
_NUMBERED: Final = re.compile(r"^( *\d+→)(.*)$")
#: the keys of a tool call's input that hold a file's code (Write, Edit, MultiEdit, NotebookEdit)
CODE_KEYS: Final = ("content", "old_string", "new_string", "new_source")
_CODE_KEY_LINE: Final = re.compile(r"^ *(?:" + "|".join(CODE_KEYS) + r"):$")


def numbered_lines(text: str, lexer: Lexer | None, default: Colour, muted: Colour) -> list[Line]:
    """A file as Read shows it: the numbered lines' code highlighted together (so a string or
    comment spanning lines keeps its colour) behind their numbers in `muted`; other lines (a
    note Claude Code appends) plain."""
    rows = text.split("\n")
    matches = [_NUMBERED.match(row) for row in rows]
    if lexer is None or not any(matches):
        return coloured_lines(text, lexer, default)
    code = coloured_lines("\n".join(m.group(2) for m in matches if m), lexer, default)
    lines: list[Line] = []
    taken = 0
    for row, match in zip(rows, matches, strict=True):
        if match is None:
            lines.append([(default, row)] if row else [])
        else:
            lines.append([(muted, match.group(1)), *code[taken]])
            taken += 1
    return lines


def tool_input_lines(text: str, lexer: Lexer | None, default: Colour) -> list[Line]:
    """A tool call's input as `tool_input_text` writes it (`key: value` lines, a multi-line
    string indented below its key), with the code a file tool writes highlighted."""
    rows = text.split("\n")
    if lexer is None:
        return coloured_lines(text, None, default)
    lines: list[Line] = []
    index = 0
    while index < len(rows):
        row = rows[index]
        lines.append([(default, row)] if row else [])
        index += 1
        if not _CODE_KEY_LINE.match(row):
            continue
        start = index
        while index < len(rows) and rows[index].startswith("  "):
            index += 1
        block = coloured_lines("\n".join(r[2:] for r in rows[start:index]), lexer, default)
        lines.extend([(default, "  "), *line] if line else [] for line in block)
    return lines
