"""Differential tests: Debian's postconf and pyfix's postconf on the same config directories.

Every directory under tests/configs/ (our own main.cf/master.cf files, one syntax topic
each, see tests/configs/README.md) is copied to a temporary directory and shown with each
of the views below; stdout, the stderr diagnostics and the exit status must be the same
(conftest.assert_same). A failure is named `test_postconf_view[DIRECTORY:VIEW]`.
"""

import os

import pytest

from conftest import (CONFIGS, ROOT, check_same, config_dir_names, copy_config, main_cf_names,
                      need_oracle, requires_oracle, run_oracle)

pytestmark = requires_oracle("postconf")

# Command-line overrides used by the -o views: a built-in value, one that refers to
# others, a level change (which moves the level-dependent defaults) and a new name.
OVERRIDES = ["-o", "myhostname=override.example.net",
             "-o", "mydomain=example.net",
             "-o", "relay_domains=$mydomain, ${myhostname}",
             "-o", "compatibility_level=2",
             "-o", "override_only=$myorigin"]

OVERRIDE_NAMES = ["myhostname", "mydomain", "myorigin", "mydestination", "relay_domains",
                  "mynetworks_style", "append_dot_mydomain", "smtputf8_enable",
                  "compatibility_level", "override_only"]

# VIEW: a fixed argument list, or a function of (config dir, names set in main.cf).
VIEWS = {
    "all": [],
    "n": ["-n"],
    "nx": ["-nx"],
    "nf": ["-nf"],
    "x": ["-x"],
    "d": ["-d"],
    "H": ["-H"],
    "nH": ["-nH"],
    "names": lambda d, names: names,
    "h-set": lambda d, names: ["-h"] + names,
    "xh-set": lambda d, names: ["-xh"] + names,
    "H-set": lambda d, names: ["-H"] + names,
    "level-defaults": lambda d, names: ["-xh"] + level_dependent_names(),
    "o-n": OVERRIDES + ["-n"],
    "o-xh": lambda d, names: OVERRIDES + ["-xh"] + OVERRIDE_NAMES + names,
    "d-every": lambda d, names: ["-d"] + oracle_default_names(d),
    "M": ["-M"],
    "Mf": ["-Mf"],
    "F": ["-F"],
    "P": ["-P"],
    "Px": ["-Px"],
}

_cache = {}


def oracle_default_names(config_dir):
    """Every name Debian's `postconf -d` prints for this directory (service parameters
    depend on master.cf)."""
    result = run_oracle("postconf", ["-c", config_dir, "-dH"])
    return result.stdout.decode("utf-8", "surrogateescape").split()


def level_dependent_names():
    """The parameters whose default depends on compatibility_level."""
    if "level" not in _cache:
        result = run_oracle("postconf", ["-d"])
        _cache["level"] = [line.split(" = ", 1)[0]
                           for line in result.stdout.decode().splitlines()
                           if "$compatibility_level" in line]
    return _cache["level"]


CASES = [pytest.param(name, view, id="%s:%s" % (name, view))
         for name in config_dir_names() for view in VIEWS]


@pytest.mark.parametrize("name, view", CASES)
def test_postconf_view(name, view, tmp_path):
    directory = copy_config(os.path.join(CONFIGS, name), str(tmp_path / name))
    main_cf = os.path.join(directory, "main.cf")
    names = main_cf_names(main_cf) if os.path.exists(main_cf) else []
    args = VIEWS[view]
    if callable(args):
        args = args(directory, names)
    check_same("postconf", ["-c", directory] + args, age=[directory],
               cwd=str(tmp_path), label="%s:%s" % (name, view))


# -- views that do not depend on a config directory -----------------------------------


def _defaults_dir(tmp_path):
    """An empty main.cf beside the stock master.cf from etc/ (service parameters)."""
    directory = tmp_path / "defaults"
    directory.mkdir()
    (directory / "main.cf").write_text("")
    master = os.path.join(ROOT, "etc", "master.cf")
    if os.path.exists(master):
        (directory / "master.cf").write_bytes(open(master, "rb").read())
    return str(directory)


GLOBAL_CASES = {
    "d-all": ["-d"],
    "dx-all": ["-dx"],
    "dH-all": ["-dH"],
    "d-unknown": ["-d", "myhostname", "no_such_parameter_at_all", "mail_version"],
    "h-unknown": ["-h", "no_such_parameter_at_all", "myorigin"],
    "dh-level": ["-dh", "compatibility_level", "relay_domains", "mynetworks_style"],
    "dxh-level": ["-dxh", "compatibility_level", "relay_domains", "mynetworks_style",
                  "append_dot_mydomain", "smtputf8_enable"],
    "o-d": ["-o", "myhostname=x.example", "-d", "myhostname"],
}


@pytest.mark.parametrize("case", sorted(GLOBAL_CASES))
def test_postconf_defaults(case, tmp_path):
    need_oracle("postconf")
    directory = _defaults_dir(tmp_path)
    check_same("postconf", ["-c", directory] + GLOBAL_CASES[case], age=[directory],
               cwd=str(tmp_path), label="defaults:" + case)


def test_postconf_d_every_parameter(tmp_path):
    """`postconf -d NAME...` with every name Debian's `postconf -d` knows, in one call."""
    directory = _defaults_dir(tmp_path)
    names = oracle_default_names(directory)
    assert len(names) > 800
    check_same("postconf", ["-c", directory, "-d"] + names, age=[directory],
               cwd=str(tmp_path), label="defaults:d-every")


def test_there_are_enough_config_dirs():
    assert len(config_dir_names()) >= 20
