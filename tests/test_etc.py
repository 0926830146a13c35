"""etc/: the stock main.cf/master.cf and the embedded development config.

Debian's postconf must read them without a single warning, and pyfix's postconf must show
them exactly as Debian's does.
"""

import os
import re

import pytest

from conftest import ROOT, age_files, check_same, copy_config, requires_oracle, run_oracle

pytestmark = requires_oracle("postconf")

ETC = os.path.join(ROOT, "etc")
DEV = os.path.join(ETC, "dev")
# Debian's postfix package installs Postfix's stock files as *.dist; its build fills in
# the @@DISTRO@@ placeholder of the smtpd_banner line, which etc/main.cf keeps as shipped
# in the 3.7.11 source.
DIST = "/usr/share/postfix"

VIEWS = {"n": ["-n"], "nx": ["-nx"], "M": ["-M"], "Mf": ["-Mf"], "F": ["-F"], "P": ["-P"],
         "all": [], "x": ["-x"]}


def _copy(tmp_path, which):
    """A private, aged copy of etc/ (stock) or etc/dev/ (dev); the dev copy sits at
    <tmp>/etc/dev so that its $config_directory/../../var paths stay inside tmp."""
    if which == "stock":
        target = str(tmp_path / "etc")
        os.makedirs(target)
        for name in ("main.cf", "master.cf"):
            with open(os.path.join(ETC, name), "rb") as src, \
                    open(os.path.join(target, name), "wb") as dst:
                dst.write(src.read())
        age_files(target)
        return target
    os.makedirs(str(tmp_path / "etc"))
    return copy_config(DEV, str(tmp_path / "etc" / "dev"))


@pytest.mark.parametrize("which", ["stock", "dev"])
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_oracle_reads_without_warnings(which, view, tmp_path):
    directory = _copy(tmp_path, which)
    result = run_oracle("postconf", ["-c", directory] + VIEWS[view], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


@pytest.mark.parametrize("which", ["stock", "dev"])
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_pyfix_shows_them_like_postfix(which, view, tmp_path):
    directory = _copy(tmp_path, which)
    check_same("postconf", ["-c", directory] + VIEWS[view], age=[directory],
               cwd=str(tmp_path), label="etc %s: %s" % (which, view))


def test_dev_config_as_run_from_the_tree():
    """The README command's form: -c with the path of etc/dev in the working tree."""
    check_same("postconf", ["-c", DEV, "-nx"], cwd=ROOT, label="etc/dev in the tree")


def _settings(directory, expand=True):
    result = run_oracle("postconf", ["-c", directory, "-nx" if expand else "-n"])
    values = {}
    for line in result.stdout.decode().splitlines():
        name, _, value = line.partition(" = ")
        values[name] = value
    return values


def test_dev_config_is_loopback_and_in_tree(tmp_path):
    directory = _copy(tmp_path, "dev")
    values = _settings(directory)
    top = str(tmp_path)
    for name in ("queue_directory", "data_directory", "mail_spool_directory"):
        assert os.path.normpath(values[name]).startswith(top + os.sep), (name, values[name])
    assert os.path.normpath(values["queue_directory"]) == os.path.join(top, "var", "spool")
    assert values["inet_interfaces"] == "127.0.0.1"
    assert values["mynetworks"] == "127.0.0.0/8"
    assert values["maillog_file"] == "/dev/stdout"
    assert values["compatibility_level"] == "3.7"
    master = run_oracle("postconf", ["-c", directory, "-F", "*/inet/service"])
    inet = [line.split(" = ")[1] for line in master.stdout.decode().splitlines()]
    assert inet == ["127.0.0.1:2525"]
    chroot = run_oracle("postconf", ["-c", directory, "-Fh", "*/*/chroot"])
    assert set(chroot.stdout.decode().split()) == {"n"}


def test_var_is_ignored_by_git():
    with open(os.path.join(ROOT, ".gitignore")) as f:
        patterns = f.read().split()
    assert "/var/" in patterns or "var/" in patterns


@pytest.mark.parametrize("name", ["main.cf", "master.cf"])
def test_stock_files_are_postfix_3_7s(name):
    dist = os.path.join(DIST, name + ".dist")
    if not os.path.exists(dist):
        pytest.skip("%s is not installed" % dist)
    with open(os.path.join(ETC, name), "rb") as ours, open(dist, "rb") as stock:
        assert ours.read().replace(b"(@@DISTRO@@)", b"(Debian/GNU)") == stock.read()


def test_stock_master_cf_names_no_foreign_daemon_directory():
    with open(os.path.join(ETC, "master.cf")) as f:
        text = f.read()
    assert not re.search(r"^[^#].*/usr/libexec/postfix", text, re.M)
