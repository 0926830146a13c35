"""postconf -M / -F / -P (showing master.cf) against Debian's postconf 3.7.11."""

import pytest

from conftest import need_oracle
from postconf_oracle import compare_show

MAIN_CF = """\
myhostname = mx.example.com
mydomain = example.com
submission_restrictions = permit_sasl_authenticated, reject
"""

MASTER_CF = """\
# A master.cf with the shapes postconf has to lay out again.
smtp      inet  n       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/$service_name
  -o { smtpd_client_restrictions = $submission_restrictions }
#  -o commented=out
  -o smtpd_sasl_auth_enable=yes
  -o milter_macro_daemon_name=ORIGINATING
pickup    unix  n       -       y       60      1       pickup
qmgr      unix  n       -       n       300?    1       qmgr
relay     unix  -       -       y       -       -       smtp -v
    -o smtp_fallback_relay= -osmtp_helo_timeout=5 -vo smtp_connect_timeout=$mydomain
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient} {an arg with blanks}
averyveryverylongservicename unix - n n - - pipe flags=F user=nobody
  argv=/usr/local/bin/some-very-long-program-name --with-a-long-option=value-past-eighty ${sender}
submission inet n - y - - smtpd -o syslog_name=duplicate -o { x = a b  c }
"""

FILES = {"main.cf": MAIN_CF, "master.cf": MASTER_CF}


@pytest.fixture(autouse=True)
def _oracle():
    need_oracle("postconf")


@pytest.mark.parametrize("args", [
    ["-M"], ["-Mf"], ["-Mx"], ["-Mfx"],
    ["-M", "smtp/inet", "submission"],
    ["-M", "*/unix"],
    ["-M", "*", "smtp"],
    ["-M", "smtp//inet", "nosuch/inet", "qmgr/fifo"],
    ["-Mx", "-o", "mydomain=override.example", "relay/unix"],
], ids=str)
def test_show_entries(tmp_path, args):
    compare_show(tmp_path, FILES, args)


@pytest.mark.parametrize("args", [
    ["-F"], ["-Ff"], ["-Fx"], ["-Fh"], ["-FH"], ["-Ffh"],
    ["-F", "*/*/command"],
    ["-F", "submission/inet/*", "pickup/unix/wakeup"],
    ["-F", "averyveryverylongservicename/unix/command"],
    ["-F", "smtp", "nosuch/unix", "qmgr/unix/process_limit"],
], ids=str)
def test_show_fields(tmp_path, args):
    compare_show(tmp_path, FILES, args)


@pytest.mark.parametrize("args", [
    ["-P"], ["-Pf"], ["-Px"], ["-Ph"], ["-PH"], ["-Pxh"],
    ["-P", "submission/inet/syslog_name", "smtp/inet"],
    ["-P", "*/*/smtpd_sasl_auth_enable"],
    ["-P", "pickup/unix", "submission/inet/nosuch", "relay"],
    ["-Px", "-o", "mydomain=override.example", "relay/unix/smtp_connect_timeout"],
], ids=str)
def test_show_params(tmp_path, args):
    compare_show(tmp_path, FILES, args)


@pytest.mark.parametrize("args", [
    ["-M", "/smtp"],
    ["-M", "sm*"],
    ["-M", "smtp/inet/x"],
    ["-M", ""],
    ["-F", "smtp/inet/bogus"],
    ["-F", "smtp/inet/Type"],
    ["-F", "smtp/inet/type/extra"],
    ["-P", "a/b/c/d"],
    ["-P", "*/in*"],
    ["-Mh"],
], ids=str)
def test_bad_requests(tmp_path, args):
    result = compare_show(tmp_path, FILES, args)
    assert result.returncode != 0


def test_missing_master_cf_is_fatal(tmp_path):
    result = compare_show(tmp_path, {"main.cf": MAIN_CF}, ["-M"])
    assert result.returncode == 1


@pytest.mark.parametrize("master_cf", [
    "smtp inet n - y - - smtpd -o { name = value with blanks } -o {broken\n",
    "smtp inet x - y - - smtpd\n",
    "smtp inet n - y 1x - smtpd\n",
    "smtp inet\n",
    "smtp inet n - y - - smtpd\n  -o a=b\nno-final-newline unix - - n - - pipe argv=/bin/cat",
], ids=repr)
def test_unusual_master_cf(tmp_path, master_cf):
    compare_show(tmp_path, {"main.cf": "", "master.cf": master_cf}, ["-Mf"])
    compare_show(tmp_path, {"main.cf": "", "master.cf": master_cf}, ["-P"])
