"""Every ```python block of README.md and docs/*.md runs, so the examples stay true.

Each block is one test (``README.md-0``, ``docs/pipeline.md-1``, ...) and runs alone in a
fresh namespace, as a reader would paste it: a block never relies on an earlier one. It
runs in a temporary working directory, so the files it writes (``m.pt``, ``model.so``) do
not land in the repository, and a failure's traceback points at the block's line in the
page. Blocks in other languages (bash: the CLI, the tracker, a phone) are not executed.
The examples use tiny models and budgets: together they run in about a minute.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
ANY_BLOCK = re.compile(r"^```.*?^```\s*$", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _blocks() -> list[object]:
    params = []
    for page in PAGES:
        text = page.read_text()
        for i, match in enumerate(PYTHON_BLOCK.finditer(text)):
            first_line = text.count("\n", 0, match.start(1)) + 1
            name = page.relative_to(ROOT).as_posix()
            params.append(pytest.param(page, first_line, match.group(1), id=f"{name}-{i}"))
    return params


BLOCKS = _blocks()


@pytest.mark.parametrize(("page", "first_line", "source"), BLOCKS)
def test_example_runs(page, first_line, source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TVM_NUM_THREADS", "1")
    # padded with blank lines so that tracebacks name the page's own line numbers
    code = compile("\n" * (first_line - 1) + source, str(page), "exec")
    exec(code, {"__name__": "__docs_example__"})


def test_every_page_has_an_example():
    pages = {p.relative_to(ROOT).as_posix() for p, _, _ in (b.values for b in BLOCKS)}
    assert pages == {p.relative_to(ROOT).as_posix() for p in PAGES}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    missing = [
        target
        for target in LINK.findall(ANY_BLOCK.sub("", page.read_text()))
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not missing, f"{page.name} links to files that do not exist: {missing}"
