"""The start-up pieces the command-line programs share (common/clean_env.py,
common/std_fds.py, common/user_acl.py, common/dsn_mask.py).

import_environment is compared with Debian's postcat, whose output shows what it did:
`postcat -e` prints the arrival time in local time, so a TZ setting is visible, and a
malformed list ends in Postfix's fatal message. The rest are unit tests of the shared
helpers, each run where its effect is real (the environment and the descriptors of a
child process).
"""

import os
import pwd
import subprocess
import sys

import pytest

import test_postcat
from conftest import candidate_path, clean_env, oracle_path, requires_oracle
from queue_sides import QueueSite
from test_postcat import ORACLE, compare

from pyfix.common import msg
from pyfix.common.dsn_mask import (DSN_NOTIFY_DELAY, DSN_NOTIFY_FAILURE, DSN_NOTIFY_NEVER,
                                   DSN_NOTIFY_SUCCESS, DSN_RET_FULL, DSN_RET_HDRS,
                                   dsn_notify_mask, dsn_notify_str, dsn_ret_code,
                                   dsn_ret_str)
from pyfix.common.user_acl import check_user_acl_byuid

@pytest.fixture(scope="module")
def postcat_site():
    site = QueueSite(prefix="ce")
    files = test_postcat.pyfix_files(site)
    site.fix_owner()
    yield site, files
    site.remove()


IMPORT_ENVIRONMENTS = [
    "{ TZ = Australia/Adelaide }",              # braces and spaces go, split_nameval
    "MAIL_CONFIG, {TZ=Asia/Kolkata} LANG=C",
    "{TZ=America/New_York}, {TZ=Asia/Tokyo}",   # the last setting wins
    "{TZ=Asia/Kolkata",                         # missing '}'
    "{TZ=UTC}x",                                # syntax error after '}'
    "=Europe/Paris",                            # missing attribute name
    "{ }",                                      # an empty element
]


@requires_oracle("postcat")
@pytest.mark.parametrize("setting", IMPORT_ENVIRONMENTS)
def test_import_environment_like_postcat(postcat_site, setting):
    site, files = postcat_site
    site.write_main_cf("import_environment = %s\n" % setting)
    try:
        compare(["-c", site.etc, "-e", files["every_type"]],
                env=clean_env({"TZ": "UTC"}), label="import_environment = %s" % setting)
    finally:
        site.write_main_cf("")


BAD_IMPORT_ENVIRONMENTS = ["=x", "{TZ=x", "{TZ=x}y", "KEEP {TZ = x y} =z"]


def _run_both(program, args, stdin=b""):
    outcomes = []
    for path in (oracle_path(program), candidate_path(program)):
        proc = subprocess.run([path] + args, input=stdin, capture_output=True, timeout=60,
                              env=clean_env())
        assert b"Traceback" not in proc.stderr, proc.stderr
        outcomes.append((proc.returncode, proc.stdout, proc.stderr))
    return outcomes


@requires_oracle("postmap")
@pytest.mark.parametrize("setting", IMPORT_ENVIRONMENTS[:3] + BAD_IMPORT_ENVIRONMENTS)
def test_import_environment_like_postmap(tmp_path, setting):
    """postmap and postalias apply the name=value settings (update_env())."""
    (tmp_path / "main.cf").write_text("import_environment = %s\n" % setting)
    want, got = _run_both("postmap", ["-c", str(tmp_path), "-q", "key", "static:value"])
    assert got == want


@requires_oracle("sendmail")
@pytest.mark.parametrize("setting", BAD_IMPORT_ENVIRONMENTS)
def test_import_environment_like_sendmail(tmp_path, setting):
    """sendmail ends with its EX_TEMPFAIL before it submits anything."""
    (tmp_path / "main.cf").write_text("import_environment = %s\n" % setting)
    want, got = _run_both("sendmail", ["-C", str(tmp_path), "-bv", "root"])
    assert got == want


def _close_stdin():
    os.close(0)


@requires_oracle("postcat")
def test_closed_stdin_like_postcat(postcat_site):
    """Descriptor 0 closed: both reopen it on /dev/null and read an empty message."""
    site, _ = postcat_site
    outcomes = []
    for program in (ORACLE, candidate_path("postcat")):
        proc = subprocess.run([program, "-c", site.etc], capture_output=True, timeout=30,
                              env=clean_env({"TZ": "UTC"}), preexec_fn=_close_stdin)
        outcomes.append((proc.returncode, proc.stdout,
                         proc.stderr.replace(b"/usr/sbin/postcat", b"postcat")))
    assert outcomes[0] == outcomes[1]


# -- the environment and descriptors of a child --------------------------------------------

CHILD = r"""
import json, os, sys
from pyfix.common import clean_env, std_fds
std_fds.open_standard_fds()
fds = {fd: os.readlink("/proc/self/fd/%d" % fd) for fd in range(3)}
words = clean_env.mail_parm_split("import_environment", sys.argv[1])
getattr(clean_env, sys.argv[2])(words)
os.write(int(sys.argv[3]), json.dumps({"env": dict(os.environ), "fds": fds}).encode())
"""


def run_child(setting, how, close=()):
    """(environment, descriptors 0-2) of a child that ran how (clean_env or update_env)
    on setting, after open_standard_fds() with the descriptors in close closed."""
    read_end, write_end = os.pipe()

    def prepare():
        for fd in close:
            os.close(fd)

    env = {"KEEP": "kept", "DROP": "dropped", "PATH": os.environ.get("PATH", ""),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, setting, how, str(write_end)], env=env,
                                preexec_fn=prepare, pass_fds=(write_end,),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        os.close(write_end)
        write_end = None
        with os.fdopen(read_end, "rb") as pipe:
            read_end = None
            data = pipe.read()
        _, err = proc.communicate(timeout=30)
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                os.close(fd)
    assert proc.returncode == 0, err
    import json
    result = json.loads(data)
    return result["env"], {int(k): v for k, v in result["fds"].items()}


def test_clean_env_keeps_only_the_list():
    env, _ = run_child("KEEP, {TZ = x y} LANG=C {NONE}", "clean_env")
    assert env == {"KEEP": "kept", "TZ": "x y", "LANG": "C"}


def test_update_env_only_sets():
    env, _ = run_child("KEEP {TZ=UTC} DROP=replaced", "update_env")
    assert env["KEEP"] == "kept" and env["TZ"] == "UTC" and env["DROP"] == "replaced"


@pytest.mark.parametrize("close", [(0,), (1,), (0, 1), (0, 2), (0, 1, 2)])
def test_open_standard_fds(close):
    _, fds = run_child("", "update_env", close)
    for fd in range(3):
        if fd in close:
            assert fds[fd] == "/dev/null"
        else:
            assert fds[fd].startswith("pipe:")


# -- user_acl and dsn_mask --------------------------------------------------------------------

def _free_uid():
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def test_check_user_acl_byuid():
    root = pwd.getpwuid(0).pw_name
    assert check_user_acl_byuid("authorized_submit_users", "static:anyone", 0) is None
    assert check_user_acl_byuid("authorized_submit_users", "static:", _free_uid()) is None
    assert check_user_acl_byuid("authorized_submit_users", root, 0) is None
    assert check_user_acl_byuid("authorized_submit_users", "nobody", 0) == root
    assert check_user_acl_byuid("authorized_submit_users", "!unknown, static:all",
                                _free_uid()) == "unknown"
    assert check_user_acl_byuid("authorized_submit_users", "", 0) == root


def test_dsn_notify_mask(capsys):
    assert dsn_notify_mask("success,Delay") == DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY
    assert dsn_notify_mask(" FAILURE \t") == DSN_NOTIFY_FAILURE
    assert dsn_notify_mask("never") == DSN_NOTIFY_NEVER
    assert dsn_notify_mask("never,success") == 0
    assert dsn_notify_mask("") == 0
    saved = list(msg._outputs)
    msg.init_stderr("test")
    try:
        assert dsn_notify_mask("success,bogus") == 0
    finally:
        msg._outputs[:] = saved
    assert 'unknown DSN NOTIFY command value "bogus" in "success,bogus"' in \
        capsys.readouterr().err
    assert dsn_notify_str(DSN_NOTIFY_SUCCESS | DSN_NOTIFY_DELAY) == "SUCCESS,DELAY"


def test_dsn_ret_code():
    assert dsn_ret_code("full") == DSN_RET_FULL
    assert dsn_ret_code("HDRS") == DSN_RET_HDRS
    assert dsn_ret_code("\u017fULL") == 0       # strcasecmp() folds ASCII only
    assert dsn_ret_code("headers") == 0
    assert dsn_ret_str(DSN_RET_HDRS) == "HDRS"
