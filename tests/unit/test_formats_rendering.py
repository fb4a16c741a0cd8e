"""How markdown and PDF show what is not the person's words: the compaction summary and isMeta
lines (labelled, never under "User"), images (a labelled placeholder, the picture itself in the
PDF), right-to-left text (shaped, in order, flush right) and code (highlighted when its language
is known). The PDFs are read back with pypdf (objects, colours, text) and poppler (text order,
positions)."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
from dataclasses import replace
from typing import Any

import pypdf
import pytest
from PIL import Image
from pygments.token import Keyword

from dataport.formats.common import MAX_IMAGE_BYTES, image_ref, message_role
from dataport.formats.highlight import _colour
from dataport.formats.markdown import CONTEXT_NOTE, SUMMARY_NOTE, MarkdownWriter
from dataport.formats.pdf import INK, MAX_IMAGE_PIXELS, MUTED, PdfWriter
from tests.unit import render_cases as cases
from tests.unit.format_sink import CONTEXT, MemorySink, project_doc, session_doc, write_session

PDF_CONTEXT = replace(CONTEXT, format="pdf")
LABELS = ("USER", "ASSISTANT", "CONTEXT", "CONVERSATION SUMMARY", "TOOL RESULT", "TOOL CALL")
_LABEL_LINE = re.compile(rf"^({'|'.join(LABELS)}) \d{{4}}-\d\d-\d\d ", re.MULTILINE)
_FILL = re.compile(rb"([\d.]+) ([\d.]+) ([\d.]+) rg")


def markdown(docs: list[dict[str, Any]]) -> str:
    sink = MemorySink()
    writer = MarkdownWriter(sink, context=CONTEXT, split_bytes=10_000_000)
    write_session(writer, project_doc(), session_doc(), docs)
    writer.close()
    return sink.files[0].text


def pdfs(docs: list[dict[str, Any]], split_bytes: int = 100 << 20) -> list[bytes]:
    sink = MemorySink()
    writer = PdfWriter(sink, context=PDF_CONTEXT, split_bytes=split_bytes)
    write_session(writer, project_doc(), session_doc(), docs)
    writer.close()
    return [bytes(file.data) for file in sink.files]


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def md_sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) of every message section."""
    parts = re.split(r"^### ", text.rsplit("\n---\n", 1)[0], flags=re.MULTILINE)[1:]
    return [(part.split("\n", 1)[0], part.split("\n", 1)[1]) for part in parts]


def pdf_sections(text: str) -> list[tuple[str, str]]:
    """(role label, text) of every message the PDF shows."""
    starts = list(_LABEL_LINE.finditer(text))
    return [(m.group(1), text[m.end():starts[i + 1].start() if i + 1 < len(starts) else None])
            for i, m in enumerate(starts)]


def fills(data: bytes) -> set[tuple[int, int, int]]:
    """Every fill (text) colour the PDF's pages set."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    found: set[tuple[int, int, int]] = set()
    for page in reader.pages:
        contents = page.get_contents()
        assert contents is not None
        for match in _FILL.finditer(contents.get_data()):
            found.add(tuple(round(float(v) * 255) for v in match.groups()))  # type: ignore[arg-type]
    return found


def images(data: bytes) -> dict[int, tuple[int, int, str]]:
    """The image XObjects embedded in a PDF: name -> (width, height, filter)."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    found = {}
    for page in reader.pages:
        resources = page["/Resources"].get_object()
        assert isinstance(resources, pypdf.generic.DictionaryObject)
        xobjects = resources.get("/XObject", pypdf.generic.DictionaryObject()).get_object()
        for ref in xobjects.values():
            obj = ref.get_object()
            if obj["/Subtype"] == "/Image":
                found[ref.idnum] = (int(obj["/Width"]), int(obj["/Height"]),
                                    str(obj.get("/Filter")))
    return found


# --- which lines are the person's ---------------------------------------------------------------

def test_message_role_reads_the_flags_and_the_old_openings() -> None:
    roles = [message_role(doc) for doc in cases.meta_session()]
    assert roles == ["summary", "context", "user", "context", "assistant", "user", "summary"]
    flagged_reply = cases.doc("x", "assistant", 1, "text", isMeta=True, isCompactSummary=True)
    assert message_role(flagged_reply) == "assistant"  # a reply is never Claude Code's note


def test_markdown_shows_summary_and_meta_lines_for_what_they_are() -> None:
    sections = md_sections(markdown(cases.meta_session()))
    headings = [heading.split(" · ")[0] for heading, _ in sections]
    assert headings == ["Conversation summary", "Context", "User", "Context", "Assistant",
                        "User", "Conversation summary"]
    for heading, body in sections:
        if heading.startswith("Conversation summary"):
            lines = body.strip().split("\n")
            assert lines[0] == f"> *{SUMMARY_NOTE}*"
            assert all(line.startswith(">") for line in lines)  # the whole summary is quoted
            assert "ran out of context" in body
        if heading.startswith("Context"):
            assert body.strip().startswith(f"<details><summary>{CONTEXT_NOTE}</summary>")
            assert body.strip().endswith("</details>")
        if heading.startswith("User"):
            for words in ("ran out of context", "Caveat:", "Review the diff"):
                assert words not in body
    context = "".join(body for heading, body in sections if heading.startswith("Context"))
    assert cases.CAVEAT in context
    assert cases.COMMAND_EXPANSION in context


def test_pdf_labels_summary_and_meta_lines_never_as_the_user() -> None:
    (data,) = pdfs(cases.meta_session())
    sections = pdf_sections(pdf_text(data))
    assert [label for label, _ in sections] == [
        "CONVERSATION SUMMARY", "CONTEXT", "USER", "CONTEXT", "ASSISTANT", "USER",
        "CONVERSATION SUMMARY"]
    for label, body in sections:
        flat = " ".join(body.split())
        if label == "CONVERSATION SUMMARY":
            assert "written by Claude Code when it compacted the conversation" in flat
            assert "not typed by the user" in flat
            assert "ran out of context" in flat
        elif label == "CONTEXT":
            assert " ".join(CONTEXT_NOTE.split()) in flat
        elif label == "USER":
            assert "ran out of context" not in flat
            assert "Caveat" not in flat


# --- images -------------------------------------------------------------------------------------

def test_image_size_is_the_decoded_size_whatever_the_padding() -> None:
    for length in range(0, 40):
        data = os.urandom(length)
        block = cases.image_block("image/png", data)
        assert image_ref(block).size == length
        checked = image_ref(block, decode_up_to=MAX_IMAGE_BYTES)
        assert (checked.size, checked.data, checked.problem) == (length, data, None)
    assert image_ref(cases.image_block("image/png", cases.BROKEN_BASE64),
                     decode_up_to=100).problem == "data is not valid base64"
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    assert "url source" in image_ref(url).label()
    assert "example.com" not in image_ref(url).label()


def test_markdown_shows_images_as_labelled_placeholders_never_base64() -> None:
    text = markdown(cases.image_session())
    for data in (cases.PNG, cases.JPEG, cases.GIF):
        assert base64.b64encode(data).decode()[:40] not in text
    assert cases.BROKEN_BASE64 not in text
    assert cases.NOT_AN_IMAGE not in text
    placeholders = re.findall(r"\[image · [^\]]*\]", text.replace("\\", ""))
    assert placeholders == [
        f"[image · image/png · {len(cases.PNG):,} bytes]",
        f"[image · image/jpeg · {len(cases.JPEG):,} bytes]",
        f"[image · image/gif · {len(cases.GIF):,} bytes]",  # inside the Read result
        f"[image · image/heic · {len(cases.picture('PNG')):,} bytes]",
        "[image · image/png · data is not valid base64]",
        "[image · image/png · 32 bytes]",
        f"[image · image/png · {len(cases.PNG):,} bytes]",
    ]


def test_pdf_embeds_png_jpeg_and_gif_and_labels_what_it_cannot_draw() -> None:
    (data,) = pdfs(cases.image_session())
    embedded = sorted(images(data).values())
    # the PNG shown twice is embedded once; HEIC, broken base64 and garbage are not embedded
    assert embedded == [(48, 48, "/FlateDecode"), (300, 200, "/DCTDecode"),
                        (640, 400, "/FlateDecode")]
    text = " ".join(pdf_text(data).split())
    assert f"[image · image/png · {len(cases.PNG):,} bytes]" in text
    assert f"[image · image/jpeg · {len(cases.JPEG):,} bytes]" in text
    assert f"[image · image/gif · {len(cases.GIF):,} bytes]" in text
    assert "image/heic · 131 bytes · not drawn: the PDF embeds PNG, JPEG, GIF and WebP" in text
    assert "[image · image/png · data is not valid base64]" in text
    assert "32 bytes · not drawn: the data cannot be read as an image" in text
    assert cases.NOT_AN_IMAGE not in text


def test_attached_documents_are_placeholders_in_markdown_and_pdf() -> None:
    pdf_file = b"%PDF-1.4 a document the user attached"
    block = cases.image_block("application/pdf", pdf_file) | {"type": "document"}
    docs = [cases.doc("d-1", "user", 1, [{"type": "text", "text": "Read this"}, block])]
    label = f"[document · application/pdf · {len(pdf_file):,} bytes]"
    encoded = base64.b64encode(pdf_file).decode()
    text = markdown(docs)
    assert f"*{label}*" in text.replace("\\", "")
    assert encoded not in text
    (data,) = pdfs(docs)
    assert label in " ".join(pdf_text(data).split())
    assert encoded not in pdf_text(data)


def test_pdf_scales_large_images_down_and_refuses_oversized_ones() -> None:
    wide = io.BytesIO()
    Image.effect_noise((3000, 1200), 60).save(wide, format="PNG")
    huge = io.BytesIO()  # 1 bit a pixel: small as a file, past the pixel cap when decoded
    Image.new("1", (8000, 6000)).save(huge, format="PNG")
    docs = [cases.doc("b-1", "user", 1, [cases.image_block("image/png", wide.getvalue()),
                                         cases.image_block("image/png", huge.getvalue()),
                                         cases.image_block("image/png", "A" * (
                                             MAX_IMAGE_BYTES // 3 * 4 + 8))])]
    (data,) = pdfs(docs)
    ((width, height, _),) = images(data).values()
    assert width <= 1000
    assert abs(width / height - 2.5) < 0.01
    text = " ".join(pdf_text(data).split())
    assert f"not drawn: more than {MAX_IMAGE_PIXELS:,} pixels" in text
    assert f"not drawn: larger than the {MAX_IMAGE_BYTES:,}-byte limit" in text


def test_pdf_volumes_count_their_images_in_their_size() -> None:
    noisy = []
    for index in range(8):
        buffer = io.BytesIO()
        Image.frombytes("RGB", (200, 200), os.urandom(120_000)).save(buffer, format="PNG")
        noisy.append(cases.doc(f"n-{index}", "user", index,
                               [cases.image_block("image/png", buffer.getvalue())]))
    split = 400_000
    volumes = pdfs(noisy, split_bytes=split)
    assert len(volumes) >= 3  # ~1 MB of incompressible images cannot fit one volume
    assert sum(len(images(v)) for v in volumes) == 8
    for volume in volumes:
        assert len(volume) < split + 130_000  # a volume may pass its cap by one message


# --- right-to-left text and code ----------------------------------------------------------------

@pytest.fixture(scope="module")
def scripts_pdf() -> bytes:
    (data,) = pdfs(cases.scripts_session())
    return data


def test_pdf_shapes_right_to_left_text_in_order_and_flush_right(
        scripts_pdf: bytes, tmp_path: Any) -> None:
    path = tmp_path / "scripts.pdf"
    path.write_bytes(scripts_pdf)
    boxes = subprocess.run(["pdftotext", "-bbox", "-enc", "UTF-8", str(path), "-"], check=True,
                           capture_output=True, text=True).stdout
    lines: dict[str, list[tuple[float, float, str]]] = {}
    for x_min, y_min, x_max, word in re.findall(
            r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" [^>]*>([^<]*)<', boxes):
        lines.setdefault(y_min, []).append((float(x_min), float(x_max), word))

    def read_right_to_left(words: list[tuple[float, float, str]]) -> str:
        """A line as a reader of Arabic or Hebrew reads it: words from the right, each word's
        glyphs (drawn left to right, in visual order) from the right."""
        return " ".join(word[::-1] for _, _, word in sorted(words, reverse=True))

    # drawn unshaped, as stored (logical order, left to right), these lines would not read so
    for sentence in (cases.ARABIC, cases.HEBREW):
        (words,) = [w for w in lines.values() if read_right_to_left(w) == sentence]
        assert max(x_max for _, x_max, _ in words) > 530  # flush right: A4 is 595 pt, margin 51
    (english,) = [w for w in lines.values() if w[0][2] == "English"]
    assert english[0][0] < 60  # a left-to-right paragraph stays flush left
    assert " ".join(w for _, _, w in english[:3]) == "English first, then"


def test_pdf_highlights_code_whose_language_is_known(scripts_pdf: bytes) -> None:
    keyword = _colour(Keyword, INK)
    assert keyword != INK
    assert keyword in fills(scripts_pdf)

    def session(content: list[dict[str, Any]], *results: dict[str, Any]) -> bytes:
        docs = [cases.doc("c-1", "assistant", 1, content)]
        if results:
            docs.append(cases.doc("c-2", "user", 2, list(results)))
        return pdfs(docs)[0]

    plain = session([{"type": "text", "text": f"```\n{cases.PYTHON}\n```"},
                     {"type": "text", "text": f"```nosuchlanguage\n{cases.PYTHON}\n```"}])
    assert keyword not in fills(plain)
    fenced = session([{"type": "text", "text": f"```python\n{cases.PYTHON}\n```"}])
    assert keyword in fills(fenced)
    write = {"type": "tool_use", "id": "w", "name": "Write",
             "input": {"file_path": "a/b.ts", "content": cases.TYPESCRIPT}}
    assert keyword in fills(session([write]))
    unknown = write | {"input": {"file_path": "a/b.unknownext", "content": cases.TYPESCRIPT}}
    assert keyword not in fills(session([unknown]))
    read = {"type": "tool_use", "id": "r", "name": "Read", "input": {"file_path": "m.rs"}}
    numbered = "\n".join(f"{n:>6}→{line}" for n, line in enumerate(cases.RUST.split("\n"), 1))
    result = {"type": "tool_result", "tool_use_id": "r", "content": numbered}
    read_pdf = session([read], result)
    assert keyword in fills(read_pdf)
    assert MUTED in fills(read_pdf)
    text = pdf_text(read_pdf)
    assert "1→fn main() {" in text
    assert 'println!("hi");' in text
