"""Packaging: each top-level folder of the tree is a subpackage of `pyfix`.

The folders carry no __init__.py of their own (a folder named `queue` with one would
shadow the standard library's queue module for anything run from the tree), so the
packages are listed here and mapped by hand: master/ -> pyfix.master, and so on.
Subfolders are ordinary packages (with __init__.py) or plain folders of modules.
"""

import os

from setuptools import setup

TOP_LEVEL = ("master", "daemons", "queue", "maps", "common", "commands")
SKIP = {"__pycache__", "tests", "testdata"}


def package_map():
    packages = {}
    for top in TOP_LEVEL:
        for folder, dirs, _ in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.startswith("."))
            packages["pyfix." + folder.replace(os.sep, ".")] = folder
    return packages


PACKAGES = package_map()

setup(
    packages=sorted(PACKAGES),
    package_dir=PACKAGES,
    # The set-gid launcher source, compiled by `python -m pyfix.commands.setgid install`.
    package_data={"pyfix.commands.setgid": ["launcher.c"]},
)
