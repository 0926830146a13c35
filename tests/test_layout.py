"""The shape of the tree (DESIGN.md §3).

The card folders and common/, commands/ are subpackages of `pyfix` through setup.py's
package_dir mapping and have no __init__.py of their own: a top-level package named
`queue` would shadow the standard library's queue module for anything run from the tree.
"""

import importlib
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

TOP_LEVEL = ("master", "daemons", "queue", "maps", "common", "commands")
SKIP_DIRS = {"__pycache__", "tests", "testdata"}
MAX_LINES = 600
# Generated data, exempt from the size limit.
GENERATED = {os.path.join("common", "param_table.py")}


def pyfix_modules():
    """(dotted name, path relative to ROOT) of every module in the top-level folders."""
    modules = []
    for top in TOP_LEVEL:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            for name in sorted(files):
                if not name.endswith(".py") or name.startswith("test_"):
                    continue
                rel = os.path.relpath(os.path.join(folder, name), ROOT)
                dotted = rel[:-3].replace(os.sep, ".")
                if dotted.endswith(".__init__"):
                    dotted = dotted[:-len(".__init__")]
                modules.append(("pyfix." + dotted, rel))
    return modules


MODULES = pyfix_modules()


# A folder whose first module has not landed yet is not in git (git keeps no empty
# folders), so a fresh clone may lack it.
EXISTING = [top for top in TOP_LEVEL if os.path.isdir(os.path.join(ROOT, top))]


@pytest.mark.parametrize("top", TOP_LEVEL)
def test_no_init_at_the_top(top):
    assert not os.path.exists(os.path.join(ROOT, top, "__init__.py")), \
        "%s/__init__.py must not exist (DESIGN.md §3)" % top


def test_foundation_folders_exist():
    for top in ("common", "commands"):
        assert top in EXISTING, top


@pytest.mark.parametrize("module", ["queue", "logging", "email", "json"])
def test_stdlib_module_not_shadowed_from_repo_root(module):
    """`import queue` run from the repository root gives the standard library's module."""
    code = "import %s; print(%s.__file__)" % (module, module)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    path = os.path.realpath(proc.stdout.strip())
    assert not path.startswith(os.path.realpath(ROOT) + os.sep), path
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    assert path.startswith(stdlib + os.sep), "%s is not under %s" % (path, stdlib)


def test_stdlib_queue_is_usable_from_repo_root():
    code = "import queue; q = queue.Queue(); q.put(1); print(q.get())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "1", proc.stderr


def test_pyfix_packages_map_to_the_folders():
    for top in EXISTING:
        module = importlib.import_module("pyfix." + top)
        paths = [os.path.realpath(p) for p in module.__path__]
        assert os.path.realpath(os.path.join(ROOT, top)) in paths, (top, paths)


def test_there_are_modules():
    assert any(name == "pyfix.common.config" for name, _ in MODULES)


_IMPORT_ALL = """
import importlib, json, sys, traceback
errors = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        errors[name] = traceback.format_exc()
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def import_errors():
    """Import every module in one fresh interpreter started outside the tree."""
    proc = subprocess.run([sys.executable, "-c", _IMPORT_ALL] + IMPORTABLE,
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# A package's __main__ runs its program when imported (python -m pyfix.x): not imported.
IMPORTABLE = [name for name, _ in MODULES if not name.endswith(".__main__")]


@pytest.mark.parametrize("name", IMPORTABLE)
def test_module_imports(name, import_errors):
    assert name not in import_errors, import_errors.get(name)


@pytest.mark.parametrize("rel", [rel for _, rel in MODULES if rel not in GENERATED])
def test_module_size(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        count = f.read().count(b"\n")
    assert count < MAX_LINES, "%s has %d lines; split it (limit %d)" % (rel, count, MAX_LINES)


def test_console_scripts_installed():
    """Each command that has landed has its console script beside the interpreter."""
    for command in ("postconf", "postfix"):
        path = os.path.join(os.path.dirname(sys.executable), command)
        assert os.access(path, os.X_OK), path
