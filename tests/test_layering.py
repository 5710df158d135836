"""The architecture's one-way rules, checked on the source (every import, function-level
ones included) and by importing ``tvm_ext`` in a process where torch cannot load.

- ``tvm_ext`` is a TVM extension a TVM user takes alone: no torch, and of patsparse only the
  torch-free core (``patsparse.core``).
- ``patsparse.core`` imports neither torch nor TVM.
- On the PyTorch side only ``patsparse.compiler`` talks to TVM.
- No module imports itself back through others (no import circle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("patsparse", "tvm_ext")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, anywhere in the file (absolute names; a ``from pkg
    import sub`` counts as importing the submodule when there is one)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            subs = {f"{module}.{a.name}" for a in node.names} & MODULES.keys()
            found.update(subs)
            if not subs or len(subs) < len(node.names):
                found.add(module)
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_every_package_module_was_found():
    assert "tvm_ext.passes" in MODULES and "patsparse.compiler" in MODULES
    assert len(MODULES) > 60


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _top(m) == "tvm_ext"))
def test_tvm_ext_imports_no_torch_and_only_the_patsparse_core(name):
    bad = sorted(
        m
        for m in IMPORTS[name]
        if _top(m) == "torch"
        or (
            _top(m) == "patsparse"
            and m != "patsparse"
            and not (m == "patsparse.core" or m.startswith("patsparse.core."))
        )
    )
    assert not bad, f"{name} imports {bad}: tvm_ext may use torch-free patsparse.core only"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("patsparse.core")))
def test_core_imports_neither_torch_nor_tvm(name):
    bad = sorted(m for m in IMPORTS[name] if _top(m) in ("torch", "tvm", "tvm_ext", "tvm_ffi"))
    assert not bad
    outside = sorted(
        m for m in IMPORTS[name] if _top(m) == "patsparse" and not m.startswith("patsparse.core")
    )
    assert not outside, f"{name} imports {outside} from outside the core"


@pytest.mark.parametrize(
    "name",
    sorted(m for m in MODULES if _top(m) == "patsparse" and not m.startswith("patsparse.compiler")),
)
def test_only_the_compiler_layer_talks_to_tvm(name):
    bad = sorted(m for m in IMPORTS[name] if _top(m) in ("tvm", "tvm_ext", "tvm_ffi"))
    assert not bad, f"{name} imports {bad}: go through patsparse.compiler"


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: sorted(d for d in deps if d in MODULES and d != m) for m, deps in IMPORTS.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles() == []


def test_cycle_finder_finds_a_circle():
    IMPORTS["patsparse.core.errors"].add("patsparse.core.patterns")
    try:
        assert ["patsparse.core.errors", "patsparse.core.patterns"] in _cycles()
    finally:
        IMPORTS["patsparse.core.errors"].discard("patsparse.core.patterns")


def test_tvm_ext_imports_in_a_process_without_torch():
    """Every tvm_ext module imports with torch blocked (a TVM user's environment), and
    loads nothing of patsparse but the core (torch not installed at all: the test below
    covers torch installed but unused)."""
    names = sorted(m for m in MODULES if _top(m) == "tvm_ext")
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, NoTorch())
        for name in {names!r}:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "patsparse")
        extra = [m for m in loaded if m not in ("patsparse", "patsparse._version")
                 and not m.startswith("patsparse.core")]
        assert not extra, extra
        assert "torch" not in sys.modules
        print("ok", len({names!r}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")


def test_importing_tvm_ext_does_not_load_an_installed_torch():
    """torch installed but unused: a TVM user importing tvm_ext.passes (and the pipeline)
    does not load it (tvm_ffi would import it eagerly; tvm_ext._tvm_without_torch keeps it
    out), and a process that loads torch afterwards works with both."""
    script = textwrap.dedent(
        """
        import sys
        import tvm_ext.passes, tvm_ext.pipeline
        assert "torch" not in sys.modules, "torch was loaded"
        import numpy as np, torch
        from tvm_ext._compat import tensor, tvm
        a = tensor(torch.arange(4, dtype=torch.float32).numpy(), tvm.cpu())
        assert a.numpy().tolist() == [0.0, 1.0, 2.0, 3.0]
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")
