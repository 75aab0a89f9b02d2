"""The layout's size and naming rules, read from the source (issue 13, items 7 and 8)."""

from __future__ import annotations

import ast
import pathlib
import re

import tracker

ROOT = pathlib.Path(tracker.__file__).parent
MODULE_LINES = 400
FUNCTION_LINES = 40
_HTTP_LITERAL = re.compile(
    r"(status_code|http_status|\bcode)\s*(==|!=|>=|<=|<|>)\s*[1-5][0-9]{2}\b"
)


def _sources() -> list[pathlib.Path]:
    return sorted(ROOT.rglob("*.py"))


def _says_why(lines: list[str], before: int, words: str) -> bool:
    """A comment in the block just above line ``before`` (1-based) says ``words``."""
    index = before - 2
    while index >= 0 and lines[index].lstrip().startswith(("#", "@")):
        if words in lines[index]:
            return True
        index -= 1
    return False


def test_no_module_is_over_400_lines_unless_it_says_why() -> None:
    """Item 8: a module over 400 lines carries a comment saying why."""
    long = [
        f"{path.relative_to(ROOT)}: {len(text.splitlines())}"
        for path in _sources()
        if len((text := path.read_text()).splitlines()) > MODULE_LINES
        and "# Over 400 lines" not in text
    ]
    assert long == []


def test_no_function_is_over_40_lines_unless_it_says_why() -> None:
    """Item 8: a function over 40 lines has a comment just above it saying why."""
    long = []
    for path in _sources():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > FUNCTION_LINES and not _says_why(lines, first, "Over 40 lines"):
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size})")
    assert long == []


def test_http_statuses_are_named_not_numbered() -> None:
    """Item 7: comparisons with an HTTP status use ``HTTPStatus`` names, not literals."""
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _HTTP_LITERAL.search(line)
    ]
    assert found == []
