"""The package ships type information: ``py.typed`` and the hand-written stub ``_core.pyi`` of
the compiled module, which must name exactly what the compiled ``gemma_native._core`` defines.

The stub is parsed with ``ast`` (never imported) and compared with the live module: top-level
functions, classes and submodules; each class's methods and properties (which is which, and
whether it has a constructor); each submodule's functions; and, for every function and method, its parameter
names and which of them have defaults (pybind11 writes the signature in the first line of each
docstring).  Parameters the bindings leave unnamed (``arg0``, ``arg1``, ...) must be
positional-only in the stub.  Every failure message lists the names that differ.

Stub conventions: names starting with an underscore that are classes or assignments are typing
helpers of the stub (``_Array``, ``_DeviceOps``), not part of the module; the submodules
``cuda`` and ``cuda_emu`` are declared as ``name: _DeviceOps`` and may lack ops their
``ops_supported()`` does not list (a build without CUDA has none on ``cuda``).
"""

from __future__ import annotations

import ast
import os
import re
import types

import pytest

import gemma_native
from gemma_native import _core

PKG = os.path.dirname(os.path.abspath(gemma_native.__file__))
STUB = os.path.join(PKG, "_core.pyi")


def _stub_tree() -> ast.Module:
    with open(STUB, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=STUB)


def _is_helper(node) -> bool:
    name = getattr(node, "name", None)
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        name = targets[0].id if isinstance(targets[0], ast.Name) else None
        return bool(name) and name.startswith("_") and (
            isinstance(node, ast.Assign) or node.value is not None)
    return isinstance(node, ast.ClassDef) and name.startswith("_")


def _public(name: str) -> bool:
    return not (name.startswith("__") and name.endswith("__"))


class Stub:
    """The stub's declarations: functions, classes (with members) and submodule annotations."""

    def __init__(self, tree: ast.Module):
        self.functions: dict[str, ast.FunctionDef] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.helpers: dict[str, ast.ClassDef] = {}
        self.submodules: dict[str, str] = {}  # name -> helper class name
        self.constants: dict[str, str] = {}   # name -> annotation (data, e.g. DTYPE_CODES)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                self.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                (self.helpers if _is_helper(node) else self.classes)[node.name] = node
            elif isinstance(node, ast.AnnAssign) and node.value is None:
                ann = node.annotation
                if isinstance(ann, ast.Name) and ann.id.startswith("_"):  # a helper class
                    self.submodules[node.target.id] = ann.id
                else:
                    self.constants[node.target.id] = ast.unparse(ann)

    def module_names(self) -> set:
        return {n for n in [*self.functions, *self.classes, *self.submodules, *self.constants]
                if _public(n)}

    @staticmethod
    def members(cls: ast.ClassDef) -> dict:
        return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}

    @staticmethod
    def attributes(cls: ast.ClassDef) -> set:
        """Class attributes declared as ``name: type`` (data, not methods)."""
        return {n.target.id for n in cls.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _runtime_members(cls: type) -> set:
    names = {n for n in vars(cls) if _public(n) and not n.startswith("_pybind11")}
    if _constructible(cls):
        names.add("__init__")
    return names


def _constructible(cls: type) -> bool:
    """pybind11 classes without py::init keep the default __init__ (no signature line)."""
    return (cls.__init__.__doc__ or "").startswith("__init__(")


def _stub_members(node: ast.ClassDef) -> set:
    return {n for n in [*Stub.members(node), *Stub.attributes(node)]
            if _public(n) or n == "__init__"}


def _diff(what: str, runtime: set, stub: set, allowed_missing: set = frozenset()) -> list:
    errors = []
    only_runtime = sorted(runtime - stub)
    only_stub = sorted(stub - runtime - set(allowed_missing))
    if only_runtime:
        errors.append(f"{what}: in the compiled module but not in _core.pyi: {only_runtime}")
    if only_stub:
        errors.append(f"{what}: in _core.pyi but not in the compiled module: {only_stub}")
    return errors


def _split_params(text: str) -> list:
    """Top-level comma split of a pybind11 parameter list (types may hold brackets)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _runtime_params(obj, name: str, method: bool):
    """[(name, has_default)] from pybind11's signature line, or None when there is none."""
    first = (getattr(obj, "__doc__", None) or "").split("\n", 1)[0]
    m = re.match(rf"{re.escape(name)}\((.*)\) -> ", first)
    if m is None:
        return None
    params = []
    for p in _split_params(m.group(1)):
        pname = p.split(":", 1)[0].strip()
        params.append((pname, "=" in p.split(":", 1)[-1] if ":" in p else "=" in p))
    if method and params and params[0][0] == "self":
        params = params[1:]
    return params


def _stub_params(fn: ast.FunctionDef, method: bool):
    a = fn.args
    pos = [*a.posonlyargs, *a.args]
    if method:
        pos = pos[1:]
    n_default = len(a.defaults)
    out = []
    for i, arg in enumerate(pos):
        out.append((arg.arg, i >= len(pos) - n_default, arg in a.posonlyargs))
    return out


def _signature_errors(where: str, obj, fn: ast.FunctionDef, method: bool) -> list:
    name = fn.name
    rt = _runtime_params(obj, name, method)
    if rt is None:
        return []
    st = _stub_params(fn, method)
    if len(rt) != len(st):
        return [f"{where}: {len(rt)} parameters in the compiled module "
                f"{[p for p, _ in rt]}, {len(st)} in _core.pyi {[p for p, _, _ in st]}"]
    errors = []
    for (rname, rdef), (sname, sdef, posonly) in zip(rt, st):
        if re.fullmatch(r"arg\d+", rname):
            if not posonly:
                errors.append(f"{where}: parameter {sname!r} is unnamed in the bindings "
                              f"({rname}); make it positional-only in _core.pyi")
        elif rname != sname:
            errors.append(f"{where}: parameter {rname!r} is called {sname!r} in _core.pyi")
        if rdef != sdef:
            errors.append(f"{where}: parameter {rname!r} has "
                          f"{'a' if rdef else 'no'} default in the compiled module but "
                          f"{'one' if sdef else 'none'} in _core.pyi")
    return errors


def test_type_information_is_shipped():
    assert os.path.isfile(os.path.join(PKG, "py.typed"))
    assert os.path.isfile(STUB)


def test_stub_names_the_compiled_module_exactly():
    stub = Stub(_stub_tree())
    errors = []
    runtime = {n for n in dir(_core) if _public(n)}
    errors += _diff("module gemma_native._core", runtime, stub.module_names())

    for name in sorted(runtime & set(stub.classes)):
        cls = getattr(_core, name)
        assert isinstance(cls, type), f"_core.{name} is declared a class but is {type(cls)}"
        node = stub.classes[name]
        errors += _diff(f"class _core.{name}", _runtime_members(cls), _stub_members(node))
        for mname, fn in Stub.members(node).items():
            attr = vars(cls).get(mname)
            if attr is None:
                continue
            stub_prop = any(isinstance(d, ast.Name) and d.id == "property"
                            for d in fn.decorator_list)
            if stub_prop != isinstance(attr, property):
                errors.append(f"_core.{name}.{mname}: a "
                              f"{'property' if isinstance(attr, property) else 'method'} in the "
                              f"compiled module but a {'property' if stub_prop else 'method'} "
                              f"in _core.pyi")
                continue
            if isinstance(attr, property):
                continue
            errors += _signature_errors(f"_core.{name}.{mname}", attr, fn, method=True)

    for name in sorted(runtime & set(stub.submodules)):
        mod = getattr(_core, name)
        assert isinstance(mod, types.ModuleType), f"_core.{name} is not a submodule"
        helper = stub.helpers.get(stub.submodules[name])
        assert helper is not None, f"_core.pyi: {name} is annotated with an undefined class"
        declared = _stub_members(helper) - {"__init__"}
        present = {n for n in dir(mod) if _public(n)}
        errors += _diff(f"submodule _core.{name}", present, declared,
                        allowed_missing=declared - {"ops_supported"} - set(mod.ops_supported()))
        for fname, fn in Stub.members(helper).items():
            if fname in present:
                errors += _signature_errors(f"_core.{name}.{fname}", getattr(mod, fname), fn,
                                            method=True)

    for name in sorted(runtime & set(stub.functions)):
        errors += _signature_errors(f"_core.{name}", getattr(_core, name), stub.functions[name],
                                    method=False)
    assert not errors, "\n".join(errors)


def test_every_stub_class_and_function_has_a_runtime_kind_match():
    """A name declared as a function must be callable, a class a type, a submodule a module."""
    stub = Stub(_stub_tree())
    wrong = []
    for name in stub.functions:
        if hasattr(_core, name) and (isinstance(getattr(_core, name), (type, types.ModuleType))
                                     or not callable(getattr(_core, name))):
            wrong.append(f"{name} (declared a function)")
    for name in stub.classes:
        if hasattr(_core, name) and not isinstance(getattr(_core, name), type):
            wrong.append(f"{name} (declared a class)")
    for name in stub.submodules:
        if hasattr(_core, name) and not isinstance(getattr(_core, name), types.ModuleType):
            wrong.append(f"{name} (declared a submodule)")
    for name in stub.constants:
        if hasattr(_core, name) and (callable(getattr(_core, name))
                                     or isinstance(getattr(_core, name), types.ModuleType)):
            wrong.append(f"{name} (declared data)")
    assert not wrong, f"_core.pyi declares these with the wrong kind: {wrong}"


def test_the_comparison_catches_differences():
    """The checker itself: a stub with a missing, an extra and a renamed parameter fails."""
    tree = _stub_tree()
    stub = Stub(tree)
    runtime = {n for n in dir(_core) if _public(n)}
    names = stub.module_names() - {"embedding"} | {"not_in_core"}
    errors = _diff("module", runtime, names)
    assert any("'embedding'" in e and "not in _core.pyi" in e for e in errors)
    assert any("'not_in_core'" in e and "not in the compiled module" in e for e in errors)
    bad = ast.parse("def rmsnorm(x, weight, eps, offset): ...").body[0]
    errors = _signature_errors("_core.rmsnorm", _core.rmsnorm, bad, method=False)
    assert errors == ["_core.rmsnorm: parameter 'w' is called 'weight' in _core.pyi"]
    unnamed = ast.parse("def f(x, y): ...").body[0]

    def f(*args):
        pass

    f.__doc__ = "f(arg0: int, arg1: int) -> None"
    errors = _signature_errors("_core.f", f, unnamed, method=False)
    assert len(errors) == 2 and all("positional-only" in e for e in errors)


@pytest.mark.parametrize("name", ["GriffinModel", "GemmaModel"])
def test_model_classes_are_constructible_and_states_are_not(name):
    assert _constructible(getattr(_core, name))
    assert not _constructible(_core.State)
