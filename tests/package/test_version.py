"""The version has one source, python/gemma_native/_version.py.

pyproject.toml declares the version dynamic and scikit-build-core's regex metadata provider reads
it from that file at build time; the package imports it from the same file.  These tests hold
each side to it: the build configuration, the parse the build performs, the imported
``gemma_native.__version__`` and, when the package is installed, its distribution metadata.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re

import pytest

import gemma_native
from tests.helpers import REPO_ROOT

ROOT = str(REPO_ROOT)
PYPROJECT = os.path.join(ROOT, "pyproject.toml")
SOURCE_REL = "python/gemma_native/_version.py"
SOURCE = os.path.join(ROOT, *SOURCE_REL.split("/"))
# The assignment scikit-build-core's regex provider looks for by default (a quoted string
# assigned to __version__ at the start of a line).
VERSION_RE = re.compile(r"""^__version__\s*(?::\s*str\s*)?=\s*(['"])(?P<value>[^'"]+)\1""",
                        re.MULTILINE)


def _source_version() -> str:
    with open(SOURCE, encoding="utf-8") as f:
        m = VERSION_RE.search(f.read())
    assert m is not None, f"{SOURCE_REL} has no `__version__ = \"...\"` line"
    return m.group("value")


def _pyproject() -> dict:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        tomllib = pytest.importorskip("tomli")
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)


def test_version_equals_the_source_file():
    v = _source_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z]+\d+)?", v), f"not a plain version: {v!r}"
    assert gemma_native.__version__ == v


def test_pyproject_reads_the_version_from_the_source_file():
    data = _pyproject()
    project = data["project"]
    assert "version" not in project, "pyproject.toml must not hard-code [project] version"
    assert "version" in project.get("dynamic", [])
    provider = data["tool"]["scikit-build"]["metadata"]["version"]
    assert provider["provider"] == "scikit_build_core.metadata.regex"
    assert provider["input"] == SOURCE_REL


def test_the_build_parses_the_same_version():
    """What scikit-build-core's regex provider itself extracts (the wheel's version)."""
    regex = pytest.importorskip("scikit_build_core.metadata.regex")
    settings = dict(_pyproject()["tool"]["scikit-build"]["metadata"]["version"])
    settings.pop("provider")
    settings["input"] = SOURCE  # the provider resolves it against the project root
    assert str(regex.dynamic_metadata("version", settings)) == _source_version()


def test_no_other_copy_of_the_version_in_the_package():
    v = re.escape(_source_version())
    pkg = os.path.join(ROOT, "python", "gemma_native")
    offenders = []
    for dirpath, _, files in os.walk(pkg):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                if re.search(rf"['\"]{v}['\"]", f.read()):
                    offenders.append(os.path.relpath(path, ROOT))
    assert offenders == [SOURCE_REL.replace("/", os.sep)]


def test_installed_metadata_matches():
    try:
        dist = metadata.distribution("gemma_native")
    except metadata.PackageNotFoundError:
        pytest.skip("gemma_native is not installed (imported from a source tree)")
    init = next((f for f in dist.files or () if str(f).replace("\\", "/") ==
                 "gemma_native/__init__.py"), None)
    if init is not None and os.path.realpath(str(dist.locate_file(init))) != os.path.realpath(
            gemma_native.__file__):
        pytest.skip(f"the installed distribution ({dist.locate_file(init)}) is not the imported "
                    f"copy ({gemma_native.__file__})")
    assert dist.version == gemma_native.__version__
