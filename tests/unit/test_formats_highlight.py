"""Highlighting helpers: runs give back exactly the text, lexers found by fence name and file
extension, Read's numbered lines and a file tool's code keys highlighted, the rest plain."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pygments.token import Keyword

from dataport.formats.highlight import (
    _colour,
    coloured_lines,
    lexer_for_language,
    lexer_for_path,
    numbered_lines,
    tool_input_lines,
)
from dataport.formats.pdf import _slice_runs, tool_input_text
from tests.unit import render_cases as cases

INK = (1, 2, 3)
MUTED = (9, 9, 9)
KEYWORD = _colour(Keyword, INK)


def plain(lines: list[list[tuple[tuple[int, int, int], str]]]) -> str:
    return "\n".join("".join(text for _, text in line) for line in lines)


def test_lexers_by_fence_name_and_file_extension() -> None:
    assert lexer_for_language("python") is not None
    assert lexer_for_language("ts") is not None
    for name in ("", "text", "plaintext", "nosuchlanguage"):
        assert lexer_for_language(name) is None
    assert lexer_for_path("/repo/src/app.tsx") is not None
    assert lexer_for_path("main.rs") is lexer_for_path("other/lib.rs")  # one lexer per suffix
    assert lexer_for_path("Dockerfile") is not None  # a name Pygments knows without a suffix
    assert lexer_for_path("notes.unknownext") is None
    assert lexer_for_path("README") is None


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300),
       st.sampled_from(["python", "typescript", "rust", "sql", "bash", "json"]))
def test_runs_give_back_exactly_the_text(text: str, language: str) -> None:
    text = text.replace("\r", "")
    assert plain(coloured_lines(text, lexer_for_language(language), INK)) == text


def test_code_is_coloured_and_plain_text_is_not() -> None:
    coloured = coloured_lines(cases.PYTHON, lexer_for_language("python"), INK)
    assert (KEYWORD, "def") in coloured[0]
    assert (KEYWORD, "return") in coloured[1]
    assert coloured_lines(cases.PYTHON, None, INK) == [[(INK, row)] for row in
                                                       cases.PYTHON.split("\n")]


def test_read_output_keeps_its_numbers_muted_and_notes_plain() -> None:
    rows = [f"{n:>6}→{row}" for n, row in enumerate(cases.RUST.split("\n"), 1)]
    text = "\n".join([*rows, "", "<system-reminder>read it</system-reminder>"])
    lines = numbered_lines(text, lexer_for_path("main.rs"), INK, MUTED)
    assert plain(lines) == text
    assert lines[0][0] == (MUTED, "     1→")
    assert (KEYWORD, "fn") in lines[0]
    assert lines[-1] == [(INK, "<system-reminder>read it</system-reminder>")]


def test_a_file_tools_code_is_highlighted_its_other_keys_not() -> None:
    text = tool_input_text({"file_path": "src/add.ts", "content": cases.TYPESCRIPT})
    lines = tool_input_lines(text, lexer_for_path("src/add.ts"), INK)
    assert plain(lines) == text
    assert lines[0] == [(INK, "file_path: src/add.ts")]
    assert lines[1] == [(INK, "content:")]
    assert (KEYWORD, "function") in lines[2] or (KEYWORD, "export") in lines[2]


def test_slicing_runs_at_wrap_points() -> None:
    runs = [(INK, "abc"), (MUTED, "defg"), (INK, "h")]
    assert list(_slice_runs(runs, 2, 6)) == [(INK, "c"), (MUTED, "def")]
    assert list(_slice_runs(runs, 0, 8)) == runs
    assert list(_slice_runs(runs, 7, 8)) == [(INK, "h")]
