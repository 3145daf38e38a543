"""The layout a newcomer reads: no import circle inside the package, and every public name documented.

Both are read from the source and the docs (``ast``, text), not by importing: they cost milliseconds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yolo_improve

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
API_PAGE = ROOT / "docs" / "api.md"


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path = SRC, package: str = "yolo_improve") -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its file (top level or inside a function: a lazy import
    still ties the two modules together). ``from A import b`` counts as importing ``A.b`` when that is a module,
    else ``A``. An import of a module's own ancestor package (``from . import __version__`` in a submodule) is not
    counted: Python has run that ``__init__`` before the submodule in every case, so the import adds no order that
    was not there, and counting it would put every package in a circle with the submodules its ``__init__`` names."""
    files = {_module_name(p, src): p for p in (src / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in files and t != name and not name.startswith(f"{t}."))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_src():
    graph = import_graph()
    assert len(graph) > 20 and "yolo_improve.transfer" in graph["yolo_improve.variants"]  # the walk sees lazy imports
    assert cycles(graph) == [], "import circles (each a group of modules that import each other): " + str(cycles(graph))


def test_the_cycle_finder_finds_a_planted_circle(tmp_path):
    """The walk and the finder on a made-up package: a lazy import inside a function closes the circle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from .sub import b\n\ndef f():\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..a import f\n    return f\n")
    (pkg / "c.py").write_text("import pkg.a\nfrom . import f  # the ancestor package: not an edge\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.c"] == {"pkg.a"} and graph["pkg"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_every_public_name_has_a_docstring_and_is_on_the_api_page():
    page = API_PAGE.read_text()
    documented = set(re.findall(r"^::: yolo_improve\.(\w+)", page, re.M))
    for name in yolo_improve.__all__:
        if name == "__version__":  # a string: stated in words on the page
            assert "__version__" in page
            continue
        obj = getattr(yolo_improve, name)
        assert (obj.__doc__ or "").strip(), f"yolo_improve.{name} has no docstring"
        assert name in documented, f"yolo_improve.{name} is not on docs/api.md (no '::: yolo_improve.{name}')"
