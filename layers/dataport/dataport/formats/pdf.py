"""PDF: a print-ready reading copy of the conversations, in volumes (`conversations-NNNN.pdf`).

Each volume is a complete PDF (fpdf2) of A4 pages:
- a title page: owner, export date and job, the export's filters, and the totals of *this
  volume* (sessions, messages, tokens, cost, date range, pages). A worker writes one volume
  without seeing the rest of the export, so the whole export's totals are not known here; they
  are in the package's manifest, and the title page says so;
- a table of contents of the volume's sessions (with links and page numbers), rendered when the
  volume ends through fpdf2's ToC placeholder, and PDF bookmarks (one per session);
- one section per session, starting on a new page: the summary as its title, then project,
  path, session id, model (of its first reply: up to `HEADING_LOOKAHEAD` messages are read
  ahead), dates, messages, tokens, tools and cost; then its messages: a role
  label (user / assistant / tool call / tool result, and conversation summary / context for the
  lines Claude Code wrote itself, `common.message_role`) with time and model, prose in DejaVu
  Sans, code fences, tool calls and tool results in monospace blocks (highlighted by Pygments
  when the fence's language or the tool's file extension is known, `formats.highlight`),
  thinking set apart in italics, images drawn (PNG, JPEG, GIF, WebP) with a labelled
  placeholder as their caption or in their place. Every body page has a running header
  (session title, project) and a page number.

Front matter (title page and contents) is numbered i, ii, ... and the body 1, 2, ... (as PDF
page labels too), so the contents, the printed numbers and the viewer's page box agree however
many pages the contents take.

Unicode: the fonts ship in the layer (`dataport/fonts`, see its README): DejaVu Sans, Bold,
Oblique and Sans Mono; a CJK subset of WenQuanYi Micro Hei and an emoji subset of Symbola as
fallbacks, loaded into a volume only when its text needs them. A character none of them can
draw (a control character, an emoji newer than Unicode 9, a rare script) is shown as U+FFFD and
counted in a manifest note; invisible format characters the fonts lack are dropped. No text can
make the export fail. Lines with right-to-left text (Hebrew, Arabic...) are shaped by HarfBuzz
and put in visual order by fpdf2 (`set_text_shaping`, around those lines only: it costs), and a
paragraph whose base direction is right to left is set flush right.

Images: one decoded at a time (at most `common.MAX_IMAGE_BYTES` of data, `MAX_IMAGE_PIXELS`
pixels), scaled down to what the page shows before fpdf2 keeps it; the volume keeps what it
embedded until it is rendered, so that counts towards its size estimate. Anything Pillow or
fpdf2 cannot read leaves the placeholder, never a failed export.

Volumes and memory: fpdf2 builds a document in memory and renders it to bytes only in
`output()`, so a volume is closed and written to its file when its body reaches `max_pages`
pages (default 500) or its estimated size reaches 85% of the split size, and the next message
goes into a new volume (a session that goes on there is marked "continued"). The caps are
checked between messages, so a volume may pass them by one message; texts longer than
`MAX_TEXT_CHARS` (code and tool output: `MAX_CODE_CHARS` / `MAX_CODE_LINES`) are shortened,
visibly and noted, so that one message stays a few pages. A volume's memory is its raw page
content (~12 KB a page), the fonts it uses (parsed by fontTools: ~25 MB for DejaVu, ~40 MB more
once CJK text appears) and the rendered bytes, written to the file in 1 MiB pieces:
`tests/benchmarks/pdf_bench` measures ~45 MB above the process's baseline for a 500-page Latin
volume and ~100 MB with CJK and emoji, far below the worker's 1024 MB.

Derived tool documents: a tool call or result that its message already showed is not shown
again (and the other way round); records are message documents, shown or not.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Final, Literal

from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from fpdf import FPDF
from fpdf.enums import Align, PageMode, XPos, YPos
from fpdf.errors import FPDFException
from fpdf.fonts import TTFFont
from fpdf.outline import OutlineSection
from PIL import Image
from pygments.lexer import Lexer

import dataport
from dataport.formats.base import ExportContext, ExportWriter, FileSink, Numbering
from dataport.formats.common import (
    MAX_IMAGE_BYTES,
    BoundedMemo,
    ToolNames,
    as_utc,
    block_key,
    content_blocks,
    context_note,
    count_text,
    decimal_text,
    image_placeholder,
    image_ref,
    is_base64_document,
    message_role,
    message_thinking,
    model_of,
    plain_content,
    plain_json,
    text_of,
    usage_of,
)
from dataport.formats.highlight import (
    Line,
    lexer_for_language,
    lexer_for_path,
    numbered_lines,
    tool_input_lines,
)
from dataport.formats.markdown import (
    CONTEXT_NOTE,
    ROLES,
    SHOWN_BLOCKS_MEMORY,
    readable_time,
)
from dataport.models.documents import RawDocument, as_decimal, derived_ref

FONT_DIR: Final = Path(__file__).resolve().parent.parent / "fonts"
PATH: Final = "conversations.pdf"

DEFAULT_MAX_PAGES: Final = 500
#: share of the split size a volume may fill by estimate (the estimate is rough)
BYTES_HEADROOM: Final = 0.85
#: the size estimate (measured, rounded up): compressed page content per raw byte; per embedded
#: font a fixed part plus, per glyph used, its share of the font file (glyphs in use are larger
#: than the average) and of the ToUnicode map and widths
CONTENT_RATIO: Final = 0.32
FONT_OVERHEAD: Final = 7_000
GLYPH_FACTOR: Final = 1.25
GLYPH_EXTRA: Final = 30
MAX_TITLE_CHARS: Final = 300
MAX_TEXT_CHARS: Final = 60_000
MAX_CODE_CHARS: Final = 20_000
MAX_CODE_LINES: Final = 400
#: messages read ahead for the session heading's model before the heading is drawn without it
HEADING_LOOKAHEAD: Final = 8
WRITE_CHUNK: Final = 1 << 20
REPLACEMENT: Final = "\ufffd"
#: images drawn in the PDF: the types fpdf2 embeds (through Pillow) and the most pixels decoded
#: for one (the largest data read is `common.MAX_IMAGE_BYTES`)
EMBEDDED_IMAGE_TYPES: Final = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF",
                               "image/webp": "WEBP"}
MAX_IMAGE_PIXELS: Final = 40_000_000
#: an image keeps at most this many pixels per point it is drawn at (fpdf2's own ratio for
#: oversized images): a retina screenshot drawn at the page's width keeps ~1,000 pixels
IMAGE_PIXELS_PER_POINT: Final = 2
#: what an image of a given pixel width is drawn at before it is scaled to the page (96 dpi)
MM_PER_PIXEL: Final = 25.4 / 96


@dataclass(frozen=True)
class _Face:
    """One shipped font file, known to fpdf2 by its family and style."""

    family: str
    style: str
    file: str

    @property
    def key(self) -> str:
        return self.family + self.style


FACES: Final = (
    _Face("sans", "", "DejaVuSans.ttf"),
    _Face("sans", "B", "DejaVuSans-Bold.ttf"),
    _Face("sans", "I", "DejaVuSans-Oblique.ttf"),
    _Face("mono", "", "DejaVuSansMono.ttf"),
    _Face("cjk", "", "WenQuanYiMicroHei-CJK.ttf"),
    _Face("emoji", "", "Symbola-Emoji.ttf"),
)
BASE_FAMILIES: Final = ("sans", "mono")
FALLBACK_FAMILIES: Final = ("sans", "mono", "cjk", "emoji")


@cache
def _glyphs(file: str) -> frozenset[str]:
    """The characters a font file draws (its cmap, less the control characters some fonts map
    to empty glyphs), read once per process."""
    font = TTFont(str(FONT_DIR / file), lazy=True)
    try:
        return frozenset(chr(code) for code in font.getBestCmap()
                         if not (code < 0x20 or 0x7F <= code < 0xA0))
    finally:
        font.close()


@cache
def _glyph_bytes(file: str) -> float:
    """Average bytes per glyph of a font file: what embedding one more glyph costs."""
    font = TTFont(str(FONT_DIR / file), lazy=True)
    try:
        return (FONT_DIR / file).stat().st_size / int(font["maxp"].numGlyphs)
    finally:
        font.close()


@cache
def _drawable() -> frozenset[str]:
    """Every character some shipped font draws, plus the line break the layout handles."""
    chars: set[str] = {"\n"}
    for face in FACES:
        chars |= _glyphs(face.file)
    return frozenset(chars)


@cache
def _face(family: str, style: str = "") -> _Face:
    return next(f for f in FACES if f.family == family and f.style == style)


# --- text that every font here can draw ---------------------------------------------------------

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_VARIATION = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")


class TextCleaner:
    """Makes any string drawable: terminal colour codes removed, tabs expanded, invisible format
    characters the fonts lack dropped, anything else no font draws replaced by U+FFFD (counted:
    the manifest says how many). Remembers which fallback families the text needed."""

    def __init__(self) -> None:
        self.replaced = 0
        self.families: set[str] = set()

    def __call__(self, text: str) -> str:
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\t" in text:
            text = text.expandtabs(4)
        if text.isascii() and text.isprintable():
            return text
        missing = set(text) - _drawable()
        if missing:
            table: dict[int, str | None] = {}
            for char in missing:
                if unicodedata.category(char) == "Cf" or _VARIATION.match(char):
                    table[ord(char)] = None
                else:
                    table[ord(char)] = REPLACEMENT
                    self.replaced += text.count(char)
            text = text.translate(table)
        beyond = set(text) - _base_glyphs()
        if beyond:
            for family in ("cjk", "emoji"):
                if family not in self.families and beyond & _glyphs(_face(family).file):
                    self.families.add(family)
        return text


@cache
def _base_glyphs() -> frozenset[str]:
    """What the fonts every volume loads draw: the rest needs a fallback font."""
    return frozenset({"\n"}).union(*(_glyphs(f.file) for f in FACES
                                     if f.family in BASE_FAMILIES))


#: scripts written right to left (Hebrew, Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic and
#: their presentation forms): a line holding them is shaped by HarfBuzz and put in visual order
#: by fpdf2's bidi algorithm; other lines are spared the cost
_RTL: Final = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")


def right_to_left(paragraph: str) -> bool:
    """True when a paragraph's first strongly directional character is right to left: its base
    direction under the Unicode bidi algorithm, so it is set flush right."""
    if _RTL.search(paragraph) is None:
        return False
    for char in paragraph:
        direction = unicodedata.bidirectional(char)
        if direction in ("R", "AL"):
            return True
        if direction == "L":
            return False
    return False


@cache
def shaping_available() -> bool:
    """fpdf2 shapes text through uharfbuzz (a layer dependency); without it text is drawn
    unshaped, in logical order, rather than failing."""
    return find_spec("uharfbuzz") is not None


def shorten(text: str, max_chars: int, max_lines: int | None = None) -> tuple[str, bool]:
    """At most `max_chars` characters (and `max_lines` lines), with a visible note of the rest."""
    cut = len(text) > max_chars
    if cut:
        text = text[:max_chars]
    if max_lines is not None and text.count("\n") >= max_lines:
        text = "\n".join(text.split("\n", max_lines)[:max_lines])
        cut = True
    if not cut:
        return text, False
    return text.rstrip() + "\n[… shortened in the PDF: the JSON export has the whole text]", True


_TOKENS: Final = re.compile(r"\s+|\S+")
_FENCE: Final = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")


def split_fences(text: str) -> Iterator[tuple[str, str, str]]:
    """(kind, info, text) runs of Markdown text: kind "text" or "code" (a fenced block, its
    language in info). An unclosed fence runs to the end, as Markdown renders it."""
    buffer: list[str] = []
    fence = info = ""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if not fence and match:
            if any(row.strip() for row in buffer):
                yield "text", "", "\n".join(buffer)
            buffer, fence, info = [], match.group(1), match.group(2)
        elif fence and match and match.group(1)[0] == fence[0] \
                and len(match.group(1)) >= len(fence) and not match.group(2):
            yield "code", info, "\n".join(buffer)
            buffer, fence, info = [], "", ""
        else:
            buffer.append(line)
    if fence:
        yield "code", info, "\n".join(buffer)
    elif any(row.strip() for row in buffer):
        yield "text", "", "\n".join(buffer)


# --- what a message shows -----------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """One thing a message shows: kind is text, thinking, call, result, note, image, or summary
    and context (lines Claude Code wrote, see `common.message_role`). `lexer` highlights a call's
    code or a file read; `image` is the image block an image part draws."""

    kind: str
    text: str
    label: str = ""
    error: bool = False
    lexer: Lexer | None = None
    image: Mapping[str, Any] | None = None


def tool_input_text(value: object) -> str:
    """A tool call's input for people: `key: value` lines with strings as they are (a command,
    a file's new content), anything else as JSON."""
    if not isinstance(value, Mapping):
        return plain_json(value, indent=True).decode("utf-8")
    lines = []
    for key, item in value.items():
        if isinstance(item, str):
            lines.append(f"{key}:\n{_indent(item)}" if "\n" in item else f"{key}: {item}")
        else:
            lines.append(f"{key}: {plain_json(item, indent=True).decode('utf-8')}")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.split("\n"))


def money_text(value: object) -> str:
    """An exact amount in USD, "—" when absent or not a number."""
    try:
        text = decimal_text(value)
    except (TypeError, ArithmeticError):
        text = ""
    return f"{text} USD" if text else "—"


# --- the document -------------------------------------------------------------------------------

Colour = tuple[int, int, int]
INK: Final[Colour] = (31, 41, 55)
MUTED: Final[Colour] = (107, 114, 128)
RULE: Final[Colour] = (214, 218, 224)
ACCENT: Final[Colour] = (201, 100, 66)
PANEL: Final[Colour] = (247, 245, 242)
WHITE: Final[Colour] = (255, 255, 255)
ROLE_COLOURS: Final[dict[str, Colour]] = {
    "user": (37, 99, 235), "assistant": ACCENT, "tool_use": (71, 85, 105),
    "tool_result": (15, 118, 110), "summary": (124, 58, 237), "context": (120, 113, 108)}
BLOCKS: Final[dict[str, tuple[Colour, Colour, Colour]]] = {  # background, bar, ink
    "code": ((244, 245, 247), (156, 163, 175), INK),
    "call": ((241, 245, 249), (100, 116, 139), INK),
    "result": ((240, 249, 247), (20, 184, 166), INK),
    "error": ((254, 242, 242), (220, 38, 38), (127, 29, 29)),
    "thinking": ((246, 244, 252), (139, 123, 196), (76, 66, 120)),
    "summary": ((245, 243, 255), (124, 58, 237), INK),
    "context": ((250, 250, 249), (168, 162, 158), (87, 83, 78)),
}
#: blocks of prose rather than monospace: (emphasis, size, line height)
PROSE_BLOCKS: Final[dict[str, tuple[str, float, float]]] = {
    "thinking": ("I", 8.6, 4.4), "summary": ("", 8.8, 4.5), "context": ("", 8.0, 4.1)}
SUMMARY_LABEL: Final = "Summary · written by Claude Code when it compacted the conversation, " \
                       "not typed by the user"
MARGIN: Final = 18.0
BODY_TOP: Final = 20.0
TEXT_SIZE: Final = 9.5
CODE_SIZE: Final = 7.8


@dataclass
class _Entry:
    """A session's line in the contents (its texts already cleaned)."""

    session_id: str
    title: str
    detail: str
    page: int
    link: int
    continued: bool
    messages: int = 0
    models: list[str] = field(default_factory=list)


@dataclass
class _Totals:
    """What the title page says about the volume."""

    messages: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    first: datetime | None = None
    last: datetime | None = None
    shortened: int = 0

    def add(self, message: RawDocument) -> None:
        self.messages += 1
        moment = as_utc(message.get("timestamp"))
        if moment is not None:
            self.first = moment if self.first is None else min(self.first, moment)
            self.last = moment if self.last is None else max(self.last, moment)
        if derived_ref(message.get("uuid")) is not None:
            return  # a copy of part of its message: usage and cost are the message's
        usage = usage_of(message)
        self.input_tokens += sum(_int(usage.get(key)) for key in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        self.output_tokens += _int(usage.get("output_tokens"))
        try:
            cost = as_decimal(message.get("costUsd"))
        except (TypeError, ArithmeticError):  # not a number: shown nowhere, so counted nowhere
            cost = None
        if cost is not None and cost.is_finite():
            self.cost += cost

    def shorten(self, text: str, max_chars: int, max_lines: int | None = None) -> str:
        short, cut = shorten(text, max_chars, max_lines)
        self.shortened += cut
        return short


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class _Volume(FPDF):
    """One PDF file being built: fonts, running header and footer, front matter, totals.

    Page 1 is the ToC placeholder: the title page and the contents are drawn into it (and into
    pages fpdf2 inserts after it) when the volume is rendered, once its sessions are known."""

    def __init__(self, context: ExportContext) -> None:
        super().__init__(format="A4")
        self.context = context
        self.clean = TextCleaner()
        self.entries: list[_Entry] = []
        self.totals = _Totals()
        self.running_title = ""
        self.running_project = ""
        self.in_front_matter = True
        self.fresh = True  # the first body page has no header yet and nothing on it
        self.content_bytes = 0  # raw content of the pages before the current one
        self.body_total = 0
        self.image_bytes = 0  # embedded image streams: held until the volume is rendered
        self.loaded: set[str] = set()
        self._units: dict[tuple[str, str], float] = {}
        self.alias_nb_pages("")  # so that "{nb}" in a message stays "{nb}"
        self.set_margins(MARGIN, BODY_TOP, MARGIN)
        self.set_auto_page_break(True, margin=18)
        self.page_mode = PageMode.USE_OUTLINES
        self.set_title("ClaudeLens conversations")
        self.set_author(context.owner_id)
        self.set_creator(dataport.GENERATOR)
        self.set_creation_date(context.created_at)
        for family in BASE_FAMILIES:
            self._load(family)
        self.use()
        self.add_page()
        self.set_page_label("r")
        self.insert_toc_placeholder(self._front_matter, pages=1, allow_extra_pages=True)
        self.set_page_label("D", label_start=1)
        self.in_front_matter = False

    def _load(self, family: str) -> None:
        if family not in self.loaded:
            for face in FACES:
                if face.family == family:
                    self.add_font(face.family, face.style, str(FONT_DIR / face.file))
            self.loaded.add(family)

    def render(self) -> bytearray:
        """The finished PDF (front matter drawn now, pages compressed, fonts subset)."""
        self.body_total = self.body_pages
        return self.output()

    # --- size ---------------------------------------------------------------------------------

    @property
    def body_pages(self) -> int:
        return self.page - 1

    def estimated_bytes(self) -> int:
        """What `render` would give now, roughly and rather more than less."""
        content = (self.content_bytes + _content_length(self, self.page)) * CONTENT_RATIO
        fonts = 0.0
        for face in FACES:
            font = self.fonts.get(face.key)
            if isinstance(font, TTFFont):
                fonts += FONT_OVERHEAD + len(font.subset) * (
                    _glyph_bytes(face.file) * GLYPH_FACTOR + GLYPH_EXTRA)
        return int(content + fonts) + self.image_bytes

    # --- text ---------------------------------------------------------------------------------

    def use(self, family: str = "sans", emphasis: str = "", size: float = TEXT_SIZE,
            colour: Colour = INK) -> None:
        self.set_font(family, emphasis, size)
        self.set_text_color(*colour)

    def _own_glyphs(self) -> frozenset[str]:
        return _glyphs(_face(self.font_family, self.font_style).file)

    @contextmanager
    def fallbacks(self, text: str) -> Iterator[None]:
        """Fallback fonts around text the current font cannot draw, and text shaping around
        right-to-left text (see `_RTL`)."""
        if _RTL.search(text) is None or not shaping_available():
            with self._fallback_fonts(text):
                yield
            return
        self.set_text_shaping(True)
        try:
            with self._fallback_fonts(text):
                yield
        finally:
            self.set_text_shaping(False)

    @contextmanager
    def _fallback_fonts(self, text: str) -> Iterator[None]:
        """Fallback fonts only around text the current font cannot draw: with fallbacks set,
        fpdf2 walks text character by character, which plain text is spared."""
        if set(text) - self._own_glyphs() <= {"\n"}:
            yield
            return
        for family in self.clean.families:
            self._load(family)
        font, style = self.current_font, self.font_style
        self.set_fallback_fonts([f for f in FALLBACK_FAMILIES if f in self.loaded],
                                exact_match=False)
        try:
            yield
        finally:
            self.set_fallback_fonts([])
            if self.current_font is not font:
                # fpdf2 2.8 makes a fallback font the page's current font when a text's first
                # fragment is drawn with it: take ours back (and say so in the next text)
                self.current_font, self.font_style = font, style
                self.current_font_is_set_on_page = False

    def text_cell(self, text: str, h: float, *, w: float = 0, align: str = "L",
                  link: int | None = None) -> None:
        """One line of clean text in a cell `w` wide (to the right margin when 0), shortened
        with an ellipsis when it does not fit; the position moves to the cell's right."""
        text = self.fit(text, w or self.w - self.r_margin - self.x)
        with self.fallbacks(text):
            self.cell(w, h, text, align=Align.coerce(align), link=link or "",
                      new_x=XPos.RIGHT, new_y=YPos.TOP)

    def measure(self, text: str) -> float:
        """Width of clean text in the current font, each character in the font fpdf2 will draw
        it with (the current one, else the fallback `fallbacks` would pick). Words recur, so
        short texts' widths are remembered (per volume, bounded)."""
        font = self.current_font
        assert isinstance(font, TTFFont)
        key = (font.fontkey, text)
        units = self._units.get(key) if len(text) <= 32 else None
        if units is None:
            own = self._own_glyphs()
            if set(text) <= own:
                units = sum(font.cw[ord(char)] for char in text)
            else:
                units = sum(font.cw[ord(char)] if char in own
                            else self._fallback_font(char).cw[ord(char)] for char in text)
            if len(text) <= 32:
                if len(self._units) >= 50_000:
                    self._units.clear()
                self._units[key] = units
        return units * self.font_size_pt * 0.001 / self.k + self.char_spacing * len(text) / self.k

    def _fallback_font(self, char: str) -> TTFFont:
        """The font fpdf2 falls back to for a character (same emphasis first, as it does)."""
        for exact in (True, False):
            for family in FALLBACK_FAMILIES:
                for face in FACES:
                    if face.family == family and (face.style == self.font_style or not exact) \
                            and char in _glyphs(face.file):
                        self._load(family)
                        font = self.fonts[face.key]
                        assert isinstance(font, TTFFont)
                        return font
        current = self.current_font
        assert isinstance(current, TTFFont)
        return current

    def fit(self, text: str, width: float) -> str:
        """One line of text, cut with an ellipsis to fit a cell `width` wide."""
        text = " ".join(text.split())
        room = width - 2 * self.c_margin
        if self.measure(text) <= room:
            return text
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if self.measure(text[:middle] + "…") <= room:
                low = middle
            else:
                high = middle - 1
        return text[:low].rstrip() + "…"

    def fit_start(self, text: str, width: float) -> str:
        """A path shortened at its start, where it matters least (`…/github/claudelens`)."""
        room = width - 2 * self.c_margin
        if self.measure(text) <= room:
            return text
        low, high = 0, len(text)
        while low < high:
            middle = (low + high) // 2
            if self.measure("…" + text[middle:]) <= room:
                high = middle
            else:
                low = middle + 1
        return "…" + text[low:]

    def wrap(self, text: str, width: float) -> Iterator[str]:
        """The lines of clean text in cells `width` wide: prose breaks between words, monospace
        where the line is full (after a space near its end, if there is one); a word longer
        than a line is broken where it must be. (fpdf2's own line breaker measures the whole
        line again for every character it adds, which made long exports ten times slower.)"""
        room = width - 2 * self.c_margin
        mono = self.font_family == "mono"
        for paragraph in text.split("\n"):
            if self.measure(paragraph) <= room:
                yield paragraph
            elif mono:
                yield from self._wrap_anywhere(paragraph, room)
            else:
                yield from self._wrap_words(paragraph, room)

    def _wrap_words(self, paragraph: str, room: float) -> Iterator[str]:
        line, used = "", 0.0
        for token in _TOKENS.findall(paragraph):
            size = self.measure(token)
            if used + size <= room:
                line, used = line + token, used + size
            elif token.isspace():  # the break: spaces at its end are not shown
                yield line
                line, used = "", 0.0
            else:
                if line.strip():
                    yield line.rstrip()
                *pieces, last = self._wrap_anywhere(token, room)
                yield from pieces
                line, used = last, self.measure(last)
        yield line

    def _wrap_anywhere(self, text: str, room: float) -> Iterator[str]:
        while self.measure(text) > room:
            cut = self._fitting_prefix(text, room)
            space = text.rfind(" ", cut * 3 // 4, cut)
            if space > 0:
                cut = space + 1
            yield text[:cut].rstrip() or text[:cut]
            text = text[cut:]
        yield text

    def _fitting_prefix(self, token: str, room: float) -> int:
        low, high = 1, len(token)
        while low < high:
            middle = (low + high + 1) // 2
            if self.measure(token[:middle]) <= room:
                low = middle
            else:
                high = middle - 1
        return low

    def paragraphs(self, text: str, h: float, *, fill: bool = False,
                   border: str | Literal[0, 1] = 0) -> None:
        """Clean text with line breaks, wrapped from the current x to the right margin, one
        cell per line (so a block's background and bar continue across page breaks). A prose
        paragraph whose base direction is right to left is set flush right. Its lines are
        broken in logical order (as the bidi algorithm wants) by unshaped widths, which joined
        Arabic forms only make narrower."""
        x = self.x
        width = self.w - self.r_margin - x
        prose = self.font_family != "mono"
        for paragraph in text.split("\n") if _RTL.search(text) else (text,):
            align = Align.R if prose and right_to_left(paragraph) else Align.L
            for line in self.wrap(paragraph, width):
                with self.fallbacks(line):
                    self.cell(0, h, line, border=border, fill=fill, align=align,
                              new_x=XPos.LEFT, new_y=YPos.NEXT)
                self.x = x

    def code_lines(self, lines: list[Line], h: float, *, fill: bool, border: str) -> None:
        """Highlighted clean monospace text, wrapped like `paragraphs`: each line's cell (its
        background and bar) first, then its runs in their colours. A line with right-to-left
        text is drawn whole in one colour, shaped (runs would break its visual order)."""
        x = self.x
        width = self.w - self.r_margin - x
        for runs in lines:
            plain = "".join(text for _, text in runs)
            if _RTL.search(plain):
                self.set_text_color(*runs[0][0])
                self.paragraphs(plain, h, fill=fill, border=border)
                continue
            start = 0
            for piece in self.wrap(plain, width):
                begin = max(start, plain.find(piece, start)) if piece else start
                start = begin + len(piece)
                self.cell(0, h, "", border=border, fill=fill, new_x=XPos.LEFT, new_y=YPos.TOP)
                left, baseline = self.x + self.c_margin, self.y + 0.5 * h + 0.3 * self.font_size
                with self.fallbacks(piece):
                    for colour, text in _slice_runs(runs, begin, start):
                        if not text.isspace():  # indentation is only room: nothing to draw
                            self.set_text_color(*colour)
                            self.text(left, baseline, text)
                        left += self.measure(text)
                self.y += h
                self.x = x

    def picture(self, data: bytes, media_type: str) -> str | None:
        """Draws an image at its own size (96 dpi) up to the page's width and a page's height,
        kept at `IMAGE_PIXELS_PER_POINT` at most; None when it was drawn, else why not. One
        image is decoded at a time; what fpdf2 keeps is counted in the volume's size."""
        expected = EMBEDDED_IMAGE_TYPES.get(media_type)
        if expected is None:
            return "not drawn: the PDF embeds PNG, JPEG, GIF and WebP"
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format != expected:
                    return f"not drawn: the data is not a {expected} image"
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    return f"not drawn: more than {MAX_IMAGE_PIXELS:,} pixels"
                w = min(self.epw, image.width * MM_PER_PIXEL)
                h = w * image.height / image.width
                room = self.page_break_trigger - BODY_TOP - 12
                if h > room:
                    w, h = w * room / h, room
                limit = (max(1, round(w * self.k * IMAGE_PIXELS_PER_POINT)),
                         max(1, round(h * self.k * IMAGE_PIXELS_PER_POINT)))
                source: Image.Image | io.BytesIO
                if image.format == "JPEG" and image.width <= limit[0]:
                    source = io.BytesIO(data)  # embedded as it is: fpdf2 copies JPEG bytes
                else:
                    if image.format == "JPEG":
                        image.draft("RGB", limit)  # decode at a fraction of the size
                    image.load()
                    if image.width > limit[0] or image.height > limit[1]:
                        image.thumbnail(limit)
                    source = image
                if self.get_y() + h > self.page_break_trigger:
                    self.add_page()
                info = self.image(source, x=self.l_margin, w=w, h=h)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
                FPDFException) as error:  # what Pillow and fpdf2 raise on data they cannot read
            return f"not drawn: the data cannot be read as an image ({type(error).__name__})"
        if info.get("usages") == 1:  # the same image again is not embedded again
            for key in ("data", "smask"):
                stream = info.get(key)
                if isinstance(stream, bytes | bytearray):
                    self.image_bytes += len(stream)
        return None

    # --- page furniture -----------------------------------------------------------------------

    def header(self) -> None:
        if self.in_front_matter:
            return
        self.content_bytes += _content_length(self, self.page - 1)
        margin, self.c_margin = self.c_margin, 0
        self.set_y(9)
        self.use(size=7.5, colour=MUTED)
        self.text_cell(self.running_title, 4, w=self.epw * 0.7)
        self.text_cell(self.running_project, 4, align="R")
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(self.l_margin, 14, self.w - self.r_margin, 14)
        self.c_margin = margin
        self.set_y(BODY_TOP)

    def footer(self) -> None:
        if self.in_front_matter:
            return
        margin, self.c_margin = self.c_margin, 0
        self.set_y(-12)
        self.use(size=7.5, colour=MUTED)
        self.text_cell(f"ClaudeLens conversations · exported "
                       f"{self.context.created_at:%Y-%m-%d}", 4, w=self.epw * 0.7)
        self.text_cell(str(self.body_pages), 4, align="R")
        self.c_margin = margin

    def start_body_page(self) -> None:
        """A new page for a session (the first body page exists already, without header)."""
        if self.fresh:
            self.fresh = False
            self.header()
        else:
            self.add_page()

    # --- front matter (drawn when the volume is rendered) -------------------------------------

    def _front_matter(self, pdf: FPDF, outline: list[OutlineSection]) -> None:
        del pdf, outline  # pdf is self; the entries hold what the contents show
        self.in_front_matter = True
        self._title_page()
        self.add_page()
        self._contents()

    def _title_page(self) -> None:
        self.set_fill_color(*ACCENT)
        self.rect(0, 0, self.w, 9, style="F")
        self.set_xy(MARGIN, 44)
        self.use(emphasis="B", size=9, colour=ACCENT)
        self.set_char_spacing(1.5)
        self.text_cell("CLAUDELENS", 5)
        self.set_char_spacing(0)
        self.set_xy(MARGIN, 51)
        self.use(emphasis="B", size=30)
        self.text_cell("Conversations", 14)
        self.set_xy(MARGIN, 68)
        self.use(size=10.5, colour=MUTED)
        self.text_cell(self.clean(f"Owner {self.context.owner_id}"), 6)
        self.set_xy(MARGIN, 74)
        self.text_cell(f"Exported {readable_time(self.context.created_at)}", 6)

        totals = self.totals
        bottom = self._cards(top=90.0)
        self.set_xy(MARGIN, bottom + 1)
        self.use(size=7.8, colour=MUTED)
        self.paragraphs(
            f"These are the totals of this volume. Tokens are input, with cache reads and "
            f"writes ({totals.input_tokens:,}), plus output ({totals.output_tokens:,}); the "
            f"dates are those of its messages. A large export is split into volumes "
            f"(conversations-0001.pdf, conversations-0002.pdf, …): the package's manifest.json "
            f"lists them all with the totals of the whole export.", 4)

        self.set_xy(MARGIN, self.get_y() + 9)
        self.use(emphasis="B", size=11)
        self.text_cell("Filters", 7)
        self.set_xy(MARGIN, self.get_y() + 9)
        rows = filter_rows(self.context.filters) or [("Scope", "everything: no filters")]
        for label, value in rows:
            self.set_x(MARGIN)
            self.use(size=9, colour=MUTED)
            self.text_cell(label, 5.5, w=40)
            self.use(size=9)
            self.paragraphs(self.clean(value), 5.5)
        if self.clean.replaced:
            self.set_xy(MARGIN, self.get_y() + 6)
            self.use(size=7.8, colour=MUTED)
            self.paragraphs(f"{self.clean.replaced:,} characters that none of the embedded "
                            f"fonts can draw are shown as {REPLACEMENT}.", 4)
        self.set_xy(MARGIN, self.h - 24)
        self.use(size=7.5, colour=MUTED)
        self.text_cell(f"Export job {self.clean(self.context.job_id)} · {dataport.GENERATOR}", 4)

    def _cards(self, top: float) -> float:
        """The volume's totals as a grid of cards; returns where the grid ends."""
        totals = self.totals
        first = f"{totals.first:%Y-%m-%d}" if totals.first else "—"
        last = f"{totals.last:%Y-%m-%d}" if totals.last else "—"
        cards = [
            ("Sessions", f"{len({e.session_id for e in self.entries}):,}"),
            ("Messages", f"{totals.messages:,}"),
            ("Pages", f"{self.body_total:,}"),
            ("Tokens", f"{totals.input_tokens + totals.output_tokens:,}"),
            ("Cost", money_text(totals.cost)),
            ("Dates", first if first == last else f"{first} \u2013 {last}"),
        ]
        gap, height = 4.0, 21.0
        width = (self.epw - 2 * gap) / 3
        for index, (label, value) in enumerate(cards):
            x = MARGIN + (index % 3) * (width + gap)
            y = top + (index // 3) * (height + gap)
            self.set_fill_color(*PANEL)
            self.rect(x, y, width, height, style="F", round_corners=True, corner_radius=2)
            self.set_xy(x + 4, y + 3.5)
            self.use(emphasis="B", size=6.8, colour=MUTED)
            self.text_cell(label.upper(), 4, w=width - 8)
            self.set_xy(x + 4, y + 9.5)
            self.use(emphasis="B", size=14 if len(value) < 14 else 10.5)
            self.text_cell(value, 8, w=width - 8)
        return top + 2 * (height + gap)

    def _contents(self) -> None:
        self.set_xy(MARGIN, 26)
        self.use(emphasis="B", size=18)
        self.text_cell("Contents", 10)
        self.set_xy(MARGIN, self.get_y() + 15)
        for entry in self.entries:
            if self.get_y() > self.page_break_trigger - 14:
                self.add_page()
                self.set_y(24)
            self._contents_entry(entry)

    def _contents_entry(self, entry: _Entry) -> None:
        y = self.get_y()
        number = str(entry.page - 1)
        self.use(emphasis="B", size=9.5)
        title = entry.title + (" (continued)" if entry.continued else "")
        title = self.fit(title, self.epw - self.measure(number) - 14)
        self.text_cell(title, 5.5, w=self.measure(title) + 2 * self.c_margin + 0.2,
                       link=entry.link)
        self.use(size=9.5, colour=RULE)
        leader = self.w - self.r_margin - self.x - self.measure(number) - 5
        dots = " ." * max(0, int((leader - 2) / self.measure(" .")))
        self.text_cell(dots, 5.5, w=max(leader, 0.1), align="R", link=entry.link)
        self.use(emphasis="B", size=9.5)
        self.text_cell(number, 5.5, align="R", link=entry.link)
        self.set_xy(MARGIN, y + 5.5)
        self.use(size=7.5, colour=MUTED)
        details = [entry.detail, f"{entry.messages:,} messages", ", ".join(entry.models)]
        self.text_cell(" · ".join(d for d in details if d), 4, link=entry.link)
        self.set_xy(MARGIN, y + 12.5)


def _slice_runs(runs: Line, begin: int, end: int) -> Iterator[tuple[Colour, str]]:
    """The parts of a line's runs between two character offsets."""
    offset = 0
    for colour, text in runs:
        stop = offset + len(text)
        if stop > begin and offset < end:
            yield colour, text[max(0, begin - offset):end - offset]
        offset = stop
        if offset >= end:
            return


def _content_length(pdf: FPDF, page: int) -> int:
    """Raw bytes of a page's content stream so far (0 for a page that does not exist)."""
    contents = pdf.pages[page].contents if page in pdf.pages else b""
    return len(contents) if isinstance(contents, bytes | bytearray) else 0


def filter_rows(filters: Mapping[str, object]) -> list[tuple[str, str]]:
    """The export's filters as label/value lines (the request's JSON names, camelCase); the
    default of including sidechains is no filter."""
    rows = []
    for name, value in filters.items():
        if value in (None, "", [], {}) or (name == "includeSidechains" and value is True):
            continue
        label = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).capitalize()
        rows.append((label, _filter_value(value)))
    return rows


def _filter_value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        if value and set(value) <= {"start", "end", "min", "max"}:
            low = value.get("start", value.get("min"))
            high = value.get("end", value.get("max"))
            if low is not None and high is not None:
                return f"from {_filter_value(low)} to {_filter_value(high)}"
            return f"from {_filter_value(low)}" if low is not None \
                else f"up to {_filter_value(high)}"
        return plain_json(value).decode("utf-8")
    if isinstance(value, list | tuple):
        shown = ", ".join(_filter_value(item) for item in value[:12])
        return shown + (f", … ({len(value):,} in all)" if len(value) > 12 else "")
    if isinstance(value, str) and "T" in value:
        try:
            return readable_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return value
    return str(value)


# --- the writer ---------------------------------------------------------------------------------

@dataclass
class _Session:
    project: RawDocument
    session: RawDocument
    pending: list[RawDocument] = field(default_factory=list)
    model: str | None = None
    entry: _Entry | None = None

    @property
    def title(self) -> str:
        """The summary on one line (sessions have no title), at most `MAX_TITLE_CHARS`."""
        summary = self.session.get("summary")
        title = " ".join(summary.split()) if isinstance(summary, str) else ""
        if not title:
            return f"Session {self.session.get('sessionId') or self.session.get('_id')}"
        return title if len(title) <= MAX_TITLE_CHARS else title[:MAX_TITLE_CHARS] + "…"


class PdfWriter(ExportWriter):
    """Writes `conversations-NNNN.pdf` volumes (see the module docstring)."""

    extension = "pdf"

    def __init__(self, sink: FileSink, *, context: ExportContext, split_bytes: int,
                 max_pages: int = DEFAULT_MAX_PAGES) -> None:
        super().__init__(sink, context=context, split_bytes=split_bytes)
        self.max_pages = max_pages
        self._volume: _Volume | None = None
        self._session: _Session | None = None
        self._shown: BoundedMemo[str, bool] = BoundedMemo(SHOWN_BLOCKS_MEMORY)
        self._tools = ToolNames()
        self._finished_pages = 0

    @property
    def pages(self) -> int:
        """Pages written so far by this writer, in all its volumes (for logs and benchmarks)."""
        volume = self._volume
        return self._finished_pages + (volume.pages_count if volume is not None else 0)

    # --- the contract -------------------------------------------------------------------------

    def begin_session(self, project: RawDocument, session: RawDocument) -> None:
        if self._session is not None:
            self.end_session()
        self._session = _Session(project, session)
        self._shown = BoundedMemo(SHOWN_BLOCKS_MEMORY)

    def write_message(self, message: RawDocument) -> None:
        current = self._session
        assert current is not None, "write_message outside a session"
        if current.entry is not None:
            self._message(current, message)
            return
        # the heading names the session's model: wait (a little) for its first assistant reply
        current.pending.append(message)
        if current.model is None and message.get("type") == "assistant":
            current.model = model_of(message)
        if current.model is not None or len(current.pending) >= HEADING_LOOKAHEAD:
            self._open_session(current)

    def end_session(self) -> None:
        current, self._session = self._session, None
        if current is not None and current.entry is None:
            self._open_session(current)

    def close(self) -> None:
        self.end_session()
        self._finish_volume()

    # --- volumes ------------------------------------------------------------------------------

    def _full(self, volume: _Volume, *, holding: int) -> bool:
        """Past a cap, unless it holds nothing yet (so that one message always fits)."""
        return holding > 0 and (volume.body_pages >= self.max_pages
                                or volume.estimated_bytes() >= self.split_bytes * BYTES_HEADROOM)

    def _finish_volume(self) -> None:
        volume, self._volume = self._volume, None
        if volume is None:
            return
        rendered = volume.render()
        self._finished_pages += volume.pages_count
        file = self.sink.open(PATH, Numbering.ALWAYS)
        view = memoryview(rendered)
        for start in range(0, len(view), WRITE_CHUNK):
            file.write(bytes(view[start:start + WRITE_CHUNK]))
        file.add_records(volume.totals.messages)
        if volume.clean.replaced:
            file.add_note(f"characters that none of the embedded fonts can draw (emoji newer "
                          f"than Unicode 9, rare scripts, control characters), shown as U+FFFD: "
                          f"{volume.clean.replaced}")
        if volume.totals.shortened:
            file.add_note(f"very long texts shortened in this PDF (marked where they are cut; "
                          f"the JSON export has them whole): {volume.totals.shortened}")
        self.sink.close(file)

    # --- sessions -----------------------------------------------------------------------------

    def _open_session(self, current: _Session, *, continued: bool = False) -> None:
        """The session's heading on a new page (of a new volume when this one is full);
        `continued` when the session goes on in a new volume."""
        volume = self._volume
        if volume is not None and (continued or self._full(volume, holding=len(volume.entries))):
            self._finish_volume()
            volume = None
        if volume is None:
            volume = self._volume = _Volume(self.context)
        clean = volume.clean
        title = clean(current.title)
        project = clean(str(current.project.get("name") or ""))
        volume.running_title, volume.running_project = title, project
        volume.start_body_page()
        volume.set_y(BODY_TOP + 4)
        link = volume.add_link(page=volume.page, y=BODY_TOP)
        volume.start_section(title + (" (continued)" if continued else ""))
        started = as_utc(current.session.get("startedAt"))
        detail = " · ".join(x for x in (project, f"{started:%Y-%m-%d %H:%M} UTC"
                                                if started else "") if x)
        current.entry = _Entry(str(current.session.get("sessionId") or ""), title, detail,
                               volume.page, link, continued)
        volume.entries.append(current.entry)
        self._heading(volume, current, title, continued)
        pending, current.pending = current.pending, []
        for message in pending:
            self._message(current, message)

    @staticmethod
    def _heading(volume: _Volume, current: _Session, title: str, continued: bool) -> None:
        volume.use(emphasis="B", size=17)
        volume.paragraphs(title, 8)
        if continued:
            volume.use(emphasis="I", size=9, colour=MUTED)
            volume.paragraphs("continued from the previous volume", 5)
        session, project = current.session, current.project
        cost = money_text(session.get("totalCost"))
        tokens = " · ".join(f"{count_text(session.get(key))} {name}" for key, name in (
            ("inputTokens", "in"), ("outputTokens", "out")) if session.get(key) is not None)
        columns = (
            [("Project", str(project.get("name") or "—")),
             ("Path", str(project.get("path") or "—")),
             ("Session", str(session.get("sessionId") or "—")),
             ("Model", current.model or "—"),
             ("Cost", cost)],
            [("Started", readable_time(session.get("startedAt"))),
             ("Ended", readable_time(session.get("endedAt"))),
             ("Messages", count_text(session.get("messageCount"))),
             ("Tokens", tokens or "—"),
             ("Tools used", count_text(session.get("toolsUsed")))],
        )
        top, row, half = volume.get_y() + 3, 5.0, volume.epw / 2
        volume.set_fill_color(*PANEL)
        volume.rect(MARGIN, top, volume.epw, row * len(columns[0]) + 5, style="F",
                    round_corners=True, corner_radius=2)
        for column, pairs in enumerate(columns):
            for index, (label, raw) in enumerate(pairs):
                volume.set_xy(MARGIN + 3 + column * half, top + 2.5 + index * row)
                volume.use(size=8, colour=MUTED)
                volume.text_cell(label, row, w=19)
                mono = label in {"Path", "Session"}
                volume.use(family="mono" if mono else "sans", size=7.6 if mono else 8)
                value = volume.clean(raw)
                if label == "Path":
                    value = volume.fit_start(value, half - 24)
                volume.text_cell(value, row, w=half - 24)
        volume.set_xy(MARGIN, top + row * len(columns[0]) + 11)
        volume.use()

    # --- messages -----------------------------------------------------------------------------

    def _message(self, current: _Session, message: RawDocument) -> None:
        volume = self._volume
        if volume is None or self._full(volume, holding=volume.totals.messages):
            self._open_session(current, continued=True)
            volume = self._volume
        assert volume is not None
        assert current.entry is not None
        volume.totals.add(message)
        current.entry.messages += 1
        model = model_of(message)
        if model and message.get("type") == "assistant" and model not in current.entry.models:
            current.entry.models.append(volume.clean(model))
        parts = self._parts(message, volume.totals)
        if not parts:
            return  # all it holds was shown with its message
        role = message_role(message)
        if role in {"summary", "context"}:  # Claude Code's lines, never the person's words
            label = SUMMARY_LABEL if role == "summary" else context_note(message, CONTEXT_NOTE)
            parts = [Part(role, p.text, label if i == 0 else "") if p.kind == "text" else p
                     for i, p in enumerate(parts)]
        self._message_heading(volume, message, role, parts)
        for part in parts:
            self._part(volume, part)
        volume.ln(3)

    def _parts(self, message: RawDocument, totals: _Totals) -> list[Part]:
        blocks = content_blocks(message)
        self._tools.learn(blocks)
        parts: list[Part] = []
        thinking = message_thinking(message, blocks)
        if thinking:
            parts.append(Part("thinking", totals.shorten(thinking, MAX_TEXT_CHARS), "Thinking"))
        if not blocks:
            text = plain_content(message)
            if text.strip():
                parts.append(Part("text", totals.shorten(text, MAX_TEXT_CHARS)))
        for block in blocks:
            key = block_key(block)
            if key is not None:
                if key in self._shown:
                    continue
                self._shown.put(key, True)
            parts.extend(self._block(block, totals))
        return parts

    def _block(self, block: Mapping[str, Any], totals: _Totals) -> list[Part]:
        kind = block.get("type")
        if kind == "text":
            text = str(block.get("text") or "")
            return [Part("text", totals.shorten(text, MAX_TEXT_CHARS))] if text.strip() else []
        if kind == "thinking":
            return []  # shown once, by message_thinking
        if kind == "redacted_thinking":
            return [Part("note", "[redacted thinking]")]
        if kind == "image":
            return [Part("image", "", image=block)]
        if is_base64_document(block):
            return [Part("note", image_placeholder(block))]
        path = self._tools.path_for(block)
        lexer = lexer_for_path(path) if path else None
        if kind == "tool_use":
            text = tool_input_text(block.get("input", {}))
            return [Part("call", totals.shorten(text, MAX_CODE_CHARS, MAX_CODE_LINES),
                         f"▸ {block.get('name') or 'tool'}", lexer=lexer)]
        if kind == "tool_result":
            content = block.get("content")
            text = text_of(content, image=image_placeholder) or "(no output)"
            tool = self._tools.name_for(block)
            error = bool(block.get("is_error"))
            label = "◂ result" + (f" of {tool}" if tool else "") + (" · error" if error else "")
            images = [Part("image", "", image=item) for item in content
                      if isinstance(item, Mapping) and item.get("type") == "image"] \
                if isinstance(content, list) else []
            return [Part("result", totals.shorten(text, MAX_CODE_CHARS, MAX_CODE_LINES), label,
                         error, lexer=None if error else lexer), *images]
        text = plain_json(block, indent=True).decode("utf-8")
        return [Part("call", totals.shorten(text, MAX_CODE_CHARS, MAX_CODE_LINES),
                     str(kind or "block"))]

    @staticmethod
    def _message_heading(volume: _Volume, message: RawDocument, kind: str,
                         parts: list[Part]) -> None:
        """A role label in the role's colour, the time, and the model of an assistant reply."""
        if volume.get_y() > volume.page_break_trigger - 16:
            volume.add_page()
        if kind == "user" and all(p.kind == "result" for p in parts):
            kind = "tool_result"
        label = ROLES.get(kind, kind.replace("_", " ").title()).upper()
        x, y = volume.l_margin, volume.get_y()
        volume.use(emphasis="B", size=6.8, colour=WHITE)
        label = volume.clean(label)
        width = volume.measure(label) + 5
        volume.set_fill_color(*ROLE_COLOURS.get(kind, MUTED))
        volume.rect(x, y + 0.5, width, 4.4, style="F", round_corners=True, corner_radius=1.2)
        volume.set_xy(x, y + 0.2)
        volume.text_cell(label, 5, w=width, align="C")
        volume.use(size=7.5, colour=MUTED)
        sidechain = bool(message.get("isSidechain")) and derived_ref(message.get("uuid")) is None
        when = readable_time(message.get("timestamp")) + ("  ·  sidechain" if sidechain else "")
        volume.text_cell("  " + when, 5, w=90)
        model = model_of(message)
        if model and kind == "assistant":
            volume.text_cell(volume.clean(model), 5, align="R")
        volume.set_xy(volume.l_margin, y + 6.8)

    def _part(self, volume: _Volume, part: Part) -> None:
        if part.kind == "text":
            for kind, info, text in split_fences(part.text):
                if kind == "code":
                    self._block_set_apart(volume, "code", text, info,
                                          lexer_for_language(info) if info else None)
                else:
                    volume.use()
                    volume.paragraphs(volume.clean(text.strip("\n")), 4.9)
                    volume.ln(1.5)
        elif part.kind == "note":
            volume.use(emphasis="I", size=8.5, colour=MUTED)
            volume.paragraphs(volume.clean(part.text), 4.5)
            volume.ln(1.5)
        elif part.kind == "image" and part.image is not None:
            self._image(volume, part.image)
        elif part.kind in {"summary", "context"}:
            # Claude Code's own text: its tinted blocks, with its code fences as code
            label = part.label
            for kind, info, text in split_fences(part.text):
                if kind == "code":
                    self._block_set_apart(volume, "code", text, label or info,
                                          lexer_for_language(info) if info else None)
                else:
                    self._block_set_apart(volume, part.kind, text, label)
                label = ""
        else:
            kind = "error" if part.error else part.kind
            self._block_set_apart(volume, kind, part.text, part.label, part.lexer)

    @staticmethod
    def _image(volume: _Volume, block: Mapping[str, Any]) -> None:
        """The image itself when fpdf2 can embed it, then its label (type, size, and why it
        is not drawn when it is not): a placeholder, never the base64 text."""
        ref = image_ref(block, decode_up_to=MAX_IMAGE_BYTES)
        problem = volume.picture(ref.data, ref.media_type) if ref.data is not None else None
        if ref.data is not None and problem is None:
            volume.ln(1)
        elif ref.data is None and ref.problem is None:
            problem = f"not drawn: larger than the {MAX_IMAGE_BYTES:,}-byte limit"
        label = ref.label() + (f" · {problem}" if problem else "")
        volume.use(emphasis="I", size=7.5, colour=MUTED)
        volume.paragraphs(volume.clean(f"[{label}]"), 4.2)
        volume.ln(1.5)

    @staticmethod
    def _block_set_apart(volume: _Volume, kind: str, text: str, label: str,
                         lexer: Lexer | None = None) -> None:
        """A tinted block with a coloured bar on its left and its label above: monospace for
        code, tool calls and results; italic prose for thinking. Page breaks split it cleanly
        because every line is its own filled cell."""
        background, bar, ink = BLOCKS[kind]
        if volume.get_y() > volume.page_break_trigger - 16:
            volume.add_page()
        if label:
            volume.use(emphasis="B", size=7, colour=bar)
            volume.text_cell(volume.clean(label), 4.2)
            volume.set_xy(volume.l_margin, volume.get_y() + 4.4)
        volume.set_fill_color(*background)
        volume.set_draw_color(*bar)
        volume.set_line_width(0.9)
        margin, volume.c_margin = volume.c_margin, 3
        volume.cell(0, 1.8, "", border="L", fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if kind in PROSE_BLOCKS:
            emphasis, size, height = PROSE_BLOCKS[kind]
            volume.use(emphasis=emphasis, size=size, colour=ink)
            volume.paragraphs(volume.clean(text.strip("\n")), height, fill=True, border="L")
        elif lexer is not None:
            volume.use(family="mono", size=CODE_SIZE, colour=ink)
            clean = volume.clean(text.strip("\n")) or " "
            if kind == "call":
                lines = tool_input_lines(clean, lexer, ink)
            else:
                lines = numbered_lines(clean, lexer, ink, MUTED)
            volume.code_lines(lines, 3.7, fill=True, border="L")
        else:
            volume.use(family="mono", size=CODE_SIZE, colour=ink)
            volume.paragraphs(volume.clean(text.strip("\n")) or " ", 3.7, fill=True, border="L")
        volume.cell(0, 1.8, "", border="L", fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        volume.c_margin = margin
        volume.set_line_width(0.2)
        volume.ln(2.4)
        volume.use()
