"""The package's import graph, read from the source with ``ast``: no module imports itself back
through a chain of other modules (an import cycle), and the benchmark subpackage sees
gemma_native only through its public names.

Every import statement counts, at module level and inside functions (a function-level import
still ties the two modules together; it only hides the cycle until that function runs).
Relative imports are resolved against the importing module; ``from . import x`` is an edge to
the submodule ``gemma_native.x`` when x is a module and to the package ``gemma_native`` (its
``__init__``) otherwise; ``import gemma_native as gn`` is an edge to ``gemma_native``.  Importing
a submodule is not counted as importing its parent package's ``__init__`` (that would make
every package that imports its own submodules a cycle)."""

from __future__ import annotations

import ast
import importlib.machinery
from pathlib import Path

import pytest

import gemma_native

PACKAGE = "gemma_native"
PACKAGE_DIR = Path(gemma_native.__file__).resolve().parent
PUBLIC_ONLY = "gemma_native.bench"  # the subpackage that may use public names only
# Import edges that close a cycle in the runtime today and wait for their fix; the cycle test
# ignores exactly these (any other cycle fails it), and test_known_cycle_edges_still_exist
# fails once one is gone, so the entry gets deleted with its fix.
KNOWN_CYCLE_EDGES: set = set()  # (importer, imported) edges of a cycle tolerated for now
# Private attributes of *other* libraries that the bench's peer harnesses call on purpose;
# gemma_native's own private attributes are never allowed.
FOREIGN_PRIVATE_ATTRS = {"_setup_cache"}  # transformers' RecurrentGemma cache reset


# ------------------------------------------------------------------------------ graph building
def find_modules(pkg_dir: Path, pkg_name: str) -> dict:
    """{dotted module name: source path, or None for compiled extension modules}."""
    mods = {}
    ext = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for path in sorted(pkg_dir.rglob("*")):
        rel = path.relative_to(pkg_dir)
        if "__pycache__" in rel.parts or not path.is_file():
            continue
        parts = list(rel.parts[:-1])
        if path.suffix == ".py":
            if path.stem != "__init__":
                parts.append(path.stem)
            mods[".".join([pkg_name, *parts])] = path
        elif path.name.endswith(ext):
            stem = next(path.name[:-len(e)] for e in ext if path.name.endswith(e))
            mods[".".join([pkg_name, *parts, stem])] = None
    return mods


def _nearest_module(name: str, mods: dict):
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, mods: dict, pkg_name: str) -> list:
    """[(imported module, imported name or None, line)] for every import of pkg_name's modules
    in one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rpartition(".")[0]  # the package relative imports start in
    out = []
    inside = lambda m: m == pkg_name or m.startswith(pkg_name + ".")  # noqa: E731
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if inside(alias.name):
                    out.append((_nearest_module(alias.name, mods), None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                if node.level - 1 >= len(base):
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the "
                                         f"top package")
                base = base[:len(base) - (node.level - 1)]
                if node.module:
                    base += node.module.split(".")
                base = ".".join(base)
            else:
                base = node.module or ""
            if not inside(base):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if alias.name != "*" and sub in mods:
                    out.append((sub, None, node.lineno))  # `from pkg import submodule`
                else:
                    out.append((_nearest_module(base, mods), alias.name, node.lineno))
    return out


def import_graph(pkg_dir: Path, pkg_name: str = PACKAGE):
    """(modules, {module: {imported module: first line}}, {module: [(target, name, line)]})."""
    mods = find_modules(pkg_dir, pkg_name)
    edges, details = {}, {}
    for name, path in mods.items():
        edges[name] = {}
        if path is None:
            continue
        details[name] = imports_of(name, path, mods, pkg_name)
        for target, _, line in details[name]:
            if target is not None and target != name:
                edges[name].setdefault(target, line)
    return mods, edges, details


def find_cycle(edges: dict):
    """One import cycle as [a, b, ..., a], or None (depth-first search, iterative)."""
    state = {}  # 1: on the current path, 2: done
    for root in sorted(edges):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(edges[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def describe_cycle(cycle, edges, mods, pkg_dir: Path):
    steps = [f"  {a} imports {b} ({mods[a].relative_to(pkg_dir).as_posix()}:{edges[a][b]})"
             for a, b in zip(cycle, cycle[1:])]
    return "import cycle " + " -> ".join(cycle) + ":\n" + "\n".join(steps)


def private_uses(pkg_dir: Path, pkg_name: str = PACKAGE, public_only: str = PUBLIC_ONLY):
    """Where modules under public_only import a private module or name of pkg_name (outside
    public_only itself), or touch a private attribute: ['file:line: what', ...]."""
    mods, _, details = import_graph(pkg_dir, pkg_name)
    sub = lambda m: m == public_only or m.startswith(public_only + ".")  # noqa: E731
    bad = []
    for name, imports in details.items():
        if not sub(name):
            continue
        where = mods[name].relative_to(pkg_dir).as_posix()
        for target, item, line in imports:
            if target is None or sub(target):
                continue
            private_part = [p for p in target.split(".")[1:] if p.startswith("_")
                            and p != "__init__"]
            if private_part:
                bad.append(f"{where}:{line}: imports private module {target}")
            if item and item.startswith("_"):
                bad.append(f"{where}:{line}: imports private name {item} from {target}")
        tree = ast.parse(mods[name].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not (
                    node.attr.startswith("__") and node.attr.endswith("__")):
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                if owner in ("self", "cls") or node.attr in FOREIGN_PRIVATE_ATTRS:
                    continue
                bad.append(f"{where}:{node.lineno}: uses private attribute .{node.attr}")
    return bad


# ------------------------------------------------------------------------------ the package
def test_the_package_has_no_import_cycle():
    mods, edges, _ = import_graph(PACKAGE_DIR)
    assert PUBLIC_ONLY in mods and "gemma_native.cli" in mods, sorted(mods)
    checked = {a: {b: line for b, line in targets.items() if (a, b) not in KNOWN_CYCLE_EDGES}
               for a, targets in edges.items()}
    cycle = find_cycle(checked)
    assert cycle is None, describe_cycle(cycle, checked, mods, PACKAGE_DIR)


def test_known_cycle_edges_still_exist():
    """Each KNOWN_CYCLE_EDGES entry still describes the code (delete it once it is fixed)."""
    _, edges, _ = import_graph(PACKAGE_DIR)
    for a, b in KNOWN_CYCLE_EDGES:
        assert b in edges.get(a, {}), f"{a} no longer imports {b}: drop it from KNOWN_CYCLE_EDGES"


def test_cli_reaches_the_bench_and_the_bench_never_the_cli():
    _, edges, _ = import_graph(PACKAGE_DIR)
    assert PUBLIC_ONLY in edges["gemma_native.cli"]
    for name, targets in edges.items():
        if name == PUBLIC_ONLY or name.startswith(PUBLIC_ONLY + "."):
            assert "gemma_native.cli" not in targets, name


def test_the_bench_uses_public_names_only():
    assert private_uses(PACKAGE_DIR) == []


def test_the_bench_imports_the_package_as_a_client():
    """`import gemma_native as gn` is how the bench reaches the runtime (the edge this test
    file's resolution gives to the package's __init__)."""
    _, edges, _ = import_graph(PACKAGE_DIR)
    users = [m for m, t in edges.items() if m.startswith(PUBLIC_ONLY) and PACKAGE in t]
    assert users, "no bench module imports gemma_native"


# ------------------------------------------------------------------------------ the checker
def _write(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = root / "pkg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "pkg"


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "from .a import f\n",
        "a.py": "from . import b\n\ndef f():\n    return b.g()\n",
        "b.py": "def g():\n    from .sub.c import h\n    return h()\n",
        "sub/__init__.py": "",
        "sub/c.py": "def h():\n    from .. import a  # back to the start\n    return a\n",
    })
    mods, edges, _ = import_graph(pkg, "pkg")
    assert set(mods) == {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"}
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"pkg.a", "pkg.b", "pkg.sub.c"}
    text = describe_cycle(cycle, edges, mods, pkg)
    assert "pkg.sub.c imports pkg.a (sub/c.py:2)" in text


def test_checker_resolves_names_modules_and_the_package(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "from .b import thing\n",
        "b.py": "thing = 1\n",
        "tool/__init__.py": "import pkg as p\nfrom .. import thing\nfrom ..b import thing\n",
    })
    _, edges, _ = import_graph(pkg, "pkg")
    # `from .. import thing` (a name, not a module) and `import pkg` are edges to pkg itself
    assert edges["pkg.tool"] == {"pkg": 1, "pkg.b": 3}
    assert find_cycle(edges) is None  # pkg.tool -> pkg -> pkg.b; nothing comes back


def test_checker_flags_private_imports_and_attributes(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "_secret.py": "x = 1\n",
        "api.py": "_hidden = 2\nshown = 3\n",
        "bench/__init__.py": ("from .. import _secret\nfrom ..api import _hidden, shown\n"
                              "import pkg._secret\n\ndef f(m):\n    return m._core\n"),
    })
    bad = private_uses(pkg, "pkg", "pkg.bench")
    assert bad == ["bench/__init__.py:1: imports private module pkg._secret",
                   "bench/__init__.py:2: imports private name _hidden from pkg.api",
                   "bench/__init__.py:3: imports private module pkg._secret",
                   "bench/__init__.py:6: uses private attribute ._core"]


def test_checker_rejects_a_relative_import_beyond_the_package(tmp_path):
    pkg = _write(tmp_path, {"__init__.py": "", "a.py": "from ... import x\n"})
    with pytest.raises(AssertionError, match="beyond the top package"):
        import_graph(pkg, "pkg")
