"""postconf -e / -X / -# and -M/-F/-P edits against Debian's postconf 3.7.11.

Each case edits two copies of one configuration, one with each program, and compares the
programs' output and the resulting files byte for byte; the round-trip cases then read the
file pyfix wrote with Debian's postconf.
"""

import os
import stat

import pytest

from conftest import candidate_path, need_oracle
from postconf_oracle import assert_round_trip, compare_edit, run_postconf, write_config

MAIN_CF = """\
# A main.cf with continued values, comments inside them and a duplicate.
myhostname = mx.example.com
mydomain = example.com
mydestination = $myhostname,
    localhost.$mydomain,
# a comment inside a continued value
    localhost

relayhost =
smtpd_banner = $myhostname ESMTP
  # an indented comment
mynetworks = 127.0.0.0/8
mynetworks = 127.0.0.0/8 [::1]/128
mynetworks_style=host
inet_interfaces = all
"""

# The same without the final newline.
MAIN_CF_NO_NEWLINE = MAIN_CF.rstrip("\n")

MASTER_CF = """\
# master.cf with multi-line entries, comments among continuation lines, and -o { }.
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }
#  -o commented=out
  -o smtpd_sasl_auth_enable=yes
pickup    unix  n       -       y       60      1       pickup
relay     unix  -       -       y       -       -       smtp -v
    -o smtp_fallback_relay= -o smtp_helo_timeout=5
#submission-commented inet n - y - - smtpd
#  -o syslog_name=off
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient} {an arg with blanks}
"""

MASTER_CF_NO_NEWLINE = MASTER_CF + "last      unix  -       n       n       -       -       pipe argv=/bin/cat"

FILES = {"main.cf": MAIN_CF, "master.cf": MASTER_CF}
FILES_NO_NEWLINE = {"main.cf": MAIN_CF_NO_NEWLINE, "master.cf": MASTER_CF_NO_NEWLINE}

MAIN_VIEWS = (["-n"], ["-h", "mydestination", "mynetworks", "relayhost"])
MASTER_VIEWS = (["-Mf"], ["-P"])


@pytest.fixture(autouse=True)
def _oracle():
    need_oracle("postconf")


# -- main.cf ---------------------------------------------------------------------------

@pytest.mark.parametrize("files", [FILES, FILES_NO_NEWLINE], ids=["newline", "no-newline"])
@pytest.mark.parametrize("args,appended", [
    (["-e", "myhostname = new.example.com", "mydestination=a, b", "relayhost = [r]:587"], 0),
    (["inet_interfaces=loopback-only"], 0),            # the implied -e, on the last line
    (["-e", "appended_to_unterminated = yes"], 1),
    (["-e", "mynetworks = 10.0.0.0/8"], 0),             # two entries: a warning
    (["-e", "relayhost = a", "relayhost = b"], 0),      # a repeated request: a warning
    (["-X", "mydestination", "mynetworks", "nosuch"], 0),
    (["-X", "inet_interfaces"], 0),
    (["-X", "relayhost ", "smtpd_banner"], 0),        # a trailing blank: no match
    (["-#", "mydestination", "smtpd_banner", "inet_interfaces"], 0),
    (["-#", "mynetworks_style"], 0),
], ids=str)
def test_edit_main(tmp_path, files, args, appended):
    outcome = compare_edit(tmp_path, files, args, appended)
    assert_round_trip(outcome, MAIN_VIEWS)


def test_edit_main_appends_several(tmp_path):
    """New parameters go at the end, in an order that is Postfix's hash order (sorted here)."""
    compare_edit(tmp_path, FILES, ["-e", "newparam = value  with   spaces", "another_new = 1",
                                   "mydomain=x", "third_new=3"], appended=3)


@pytest.mark.parametrize("args", [
    ["-e", "nameonly"],
    ["-e", "= value"],
    ["-e", "#commented = out"],
    ["-e", "a = b\nc = d"],
    ["-e"],
    ["-X"],
    ["-X", "a=b"],
    ["-X", "  "],
    ["-#", "# x"],
    ["-eX", "a"],
], ids=str)
def test_edit_main_errors(tmp_path, args):
    compare_edit(tmp_path, FILES, args)


def test_edit_main_missing_file(tmp_path):
    compare_edit(tmp_path, {"master.cf": MASTER_CF}, ["-e", "a = b"])


def test_edit_keeps_other_bytes(tmp_path):
    """CRLF lines, tabs and non-UTF-8 bytes outside the edited entry stay as they were."""
    files = {"main.cf": b"a = 1\r\nb\t=\t\xe9t\xe9\n  \n\tcontinued-odd\nc = 3\n"}
    compare_edit(tmp_path, files, ["-e", "c = 4"])
    compare_edit(tmp_path / "2", files, ["-#", "b"])


def test_repeated_exclude_request(tmp_path):
    """Postfix crashes on a repeated -X name; pyfix warns and removes it once."""
    directory = write_config(tmp_path / "conf", {"main.cf": MAIN_CF})
    result = run_postconf(candidate_path("postconf"), directory, ["-X", "relayhost", "relayhost"])
    assert (result.stdout, result.diagnostics(), result.returncode) == \
        (b"", ["warning: ignoring earlier request: 'relayhost'"], 0)
    with open(os.path.join(directory, "main.cf")) as f:
        assert "relayhost" not in f.read()


def test_edit_result_mode_and_no_temp_file(tmp_path):
    directory = write_config(tmp_path / "conf", {"main.cf": MAIN_CF})
    path = os.path.join(directory, "main.cf")
    os.chmod(path, 0o640)
    result = run_postconf(candidate_path("postconf"), directory, ["-e", "relayhost = x"])
    assert result.returncode == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(directory)) == ["main.cf"]


# -- master.cf -------------------------------------------------------------------------

SUBMISSION = ("submission inet n - y - - smtpd -o syslog_name=postfix/submission "
              "-o smtpd_tls_security_level=encrypt")


@pytest.mark.parametrize("files", [FILES, FILES_NO_NEWLINE], ids=["newline", "no-newline"])
@pytest.mark.parametrize("args", [
    ["-Me", "submission/inet = " + SUBMISSION],
    ["-M", "new/unix=new unix - - n - - pipe flags=F argv=/bin/cat {a b} -o x"],
    ["-Me", "relay/unix = relay2 unix - - n - - smtp -o { a = b c }"],
    ["-Me", "other/unix = pickup unix n - y 120 1 pickup"],    # matches by its own name
    ["-Me", "*/unix = pickup unix n - y 120 1 pickup"],
    ["-Me", "last/unix = last unix - n n - - pipe argv=/bin/true"],
    ["-MX", "submission/inet", "relay/unix"],
    ["-MX", "*/unix"],
    ["-MX", "nosuch/inet"],
    ["-M#", "submission/inet", "maildrop/unix", "last/unix"],
    ["-Fe", "pickup/unix/wakeup=120", "smtp/inet/chroot=n"],
    ["-F", "relay/unix/command=smtp -o a=b -o { c = d e } arg {x y}"],
    ["-Fe", "submission/inet/process_limit=10", "submission/inet/command=smtpd -v"],
    ["-Fe", "last/unix/private=n"],
    ["-Fe", "nosuch/unix/wakeup=1"],
    ["-Pe", "smtp/inet/syslog_name=postfix/mx", "submission/inet/smtpd_sasl_auth_enable=no",
     "submission/inet/new_param=1"],
    ["-Pe", "submission/inet/smtpd_client_restrictions=permit"],
    ["-Pe", "relay/unix/smtp_helo_timeout=10", "maildrop/unix/flags=x"],
    ["-Pe", "last/unix/syslog_name=last", "nosuch/inet/a=b"],
    ["-PX", "submission/inet/syslog_name", "relay/unix/smtp_helo_timeout"],
    ["-PX", "submission/inet/smtpd_client_restrictions", "smtp/inet/nosuch"],
    ["-PX", "nosuch/unix/x", "last/unix/x"],
    ["-P", "-e", "smtp/inet/a=1", "smtp/inet/b=2", "smtp/inet/a=3"],
], ids=str)
def test_edit_master(tmp_path, files, args):
    outcome = compare_edit(tmp_path, files, args)
    assert_round_trip(outcome, MASTER_VIEWS)


@pytest.mark.parametrize("args", [
    ["-Me", "submission/inet = too few fields"],
    ["-Me", "x/unix = x unix q - - - - cmd"],
    ["-Me", "x/unix = x unix - - - 1x - cmd"],
    ["-Me", "submission = " + SUBMISSION],
    ["-Me", "a/b/c = " + SUBMISSION],
    ["-MX", "submission/inet=x"],
    ["-Me", "#submission/inet = " + SUBMISSION],
    ["-Me", "a/inet = x\ny"],
    ["-Fe", "smtp/inet/private=a b"],
    ["-Fe", "smtp/inet/*=x"],
    ["-Fe", "smtp/inet/bogus=x"],
    ["-Fe", "smtp/inet/wakeup=abc"],
    ["-Fe", "smtp/inet/type=tcp"],
    ["-Pe", "smtp/inet/x=a b"],
    ["-Pe", "smtp/inet/*=x"],
    ["-Pe", "smtp/inet=x"],
    ["-PX", "smtp/inet"],
    ["-P", "-e"],
    ["-M#"],
], ids=str)
def test_edit_master_errors(tmp_path, args):
    compare_edit(tmp_path, FILES, args)


@pytest.mark.parametrize("master_cf", [
    "smtp\n  inet n - y - - smtpd\n",
    "a=b inet n - y - - smtpd\n",
    "smtp inet=x n - y - - smtpd\n",
    "smtp unix/x n - y - - smtpd\n",
    "other unix - - n - - pipe\nsmtp inet n - y - -\n",
    "smtp inet n - y - - smtpd -o {a=b\n",             # a warning naming a newline
    "smtp inet n - y - - smtpd\r\n  -o a=b\r\n",
    "smtp inet n - y - - smtpd -o a=b -o a=c -- -o a=d\n",
    "smtp inet n - y - - smtpd -o\n",
], ids=repr)
def test_edit_master_unusual_file(tmp_path, master_cf):
    compare_edit(tmp_path, {"main.cf": "", "master.cf": master_cf},
                 ["-Pe", "smtp/inet/a=b"])


def test_edit_master_missing_file(tmp_path):
    compare_edit(tmp_path, {"main.cf": ""}, ["-Pe", "smtp/inet/a=b"])
