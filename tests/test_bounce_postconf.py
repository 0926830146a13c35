"""`postconf -b` and `postconf -t` (the bounce templates, expanded or as templates),
pyfix's beside Debian's on the same main.cf and template files: the same output byte
for byte, and the same warnings. (Debian's -b repeats the warnings given while the file
was read, an artifact of its output buffering; repeated lines are compared once.)"""

import itertools
import os

import pytest

from conftest import candidate_path, need_oracle
from postconf_oracle import run_postconf, write_config

MAIN_CF = "myhostname = mx.example.com\nmydomain = example.com\n"

GOOD = """\
# comment

failure_template = <<EOF
Charset: utf-8
From: Mail Robot <MAILER-DAEMON@example.com>
Subject: Returned mail
Postmaster-Subject: PM: returned mail

Gr\u00fc\u00dfe from $myhostname ($mydomain), $mail_name.
Kept for $maximal_queue_lifetime_days days; warned after $delay_warning_time_hours h.
EOF

delay_template = <<END
Subject: Delayed

  Delayed on $myhostname for $delay_warning_time_minutes minutes.
END
"""

WARNINGS = """\
failure_template = <<EOF
Subject: x

8-bit text \u00e9 under us-ascii
EOF
delay_template = <<EOF
Subject:

text
EOF
success_template = <<EOF
Postmaster-Subject: not for success

text
EOF
verify_template = <<EOF
Bogus: header

text $delay_warning_time_seconds $delay_warning_time_weeks
EOF
unknown_template = value
"""

UNITS = """\
delay_template = <<EOF
Subject: units

$delay_warning_time_seconds s, $delay_warning_time_weeks w, $maximal_queue_lifetime_hours h
EOF
"""


def _uniq(text):
    return [line for line, _ in itertools.groupby(text.splitlines())]


def _compare(tmp_path, args, files=None, main_cf=MAIN_CF):
    directory = write_config(tmp_path / "conf", {"main.cf": main_cf, "master.cf": ""})
    for name, text in (files or {}).items():
        with open(os.path.join(str(tmp_path), name), "w") as f:
            f.write(text)
    args = [os.path.join(str(tmp_path), arg) if files and arg in files else arg
            for arg in args]
    want = run_postconf(need_oracle("postconf"), directory, args)
    got = run_postconf(candidate_path("postconf"), directory, args)
    assert got.stdout == want.stdout
    assert got.returncode == want.returncode
    assert _uniq(got.stderr) == _uniq(want.stderr.replace(
        need_oracle("postconf") + ":", candidate_path("postconf") + ":"))
    return got


@pytest.mark.parametrize("option", ["-b", "-t"])
def test_builtin_templates_like_postfix(tmp_path, option):
    got = _compare(tmp_path, [option])
    assert b"This is the mail system at host mx.example.com." in got.stdout or option == "-t"


@pytest.mark.parametrize("option", ["-b", "-t"])
def test_template_file_like_postfix(tmp_path, option):
    got = _compare(tmp_path, [option, "good.cf"], {"good.cf": GOOD})
    assert b"Subject: Returned mail" in got.stdout or option == "-b"


@pytest.mark.parametrize("option", ["-b", "-t"])
def test_template_warnings_like_postfix(tmp_path, option):
    got = _compare(tmp_path, [option, "bad.cf"], {"bad.cf": WARNINGS})
    assert "8-bit message text in failure template" in got.stderr


def test_time_unit_warnings_like_postfix(tmp_path):
    got = _compare(tmp_path, ["-b", "units.cf"], {"units.cf": UNITS},
                   main_cf=MAIN_CF + "delay_warning_time = 4h\n")
    assert "excessive result" in got.stderr and "zero result" in got.stderr


def test_template_file_from_main_cf_and_obsolete_from_like_postfix(tmp_path):
    path = os.path.join(str(tmp_path), "main-good.cf")
    with open(path, "w") as f:
        f.write(GOOD)
    _compare(tmp_path, ["-t"], main_cf=MAIN_CF + "bounce_template_file = %s\n"
             "header_from_format = obsolete\n" % path)


def test_errors_like_postfix(tmp_path):
    _compare(tmp_path, ["-t", "/nonexistent/templates.cf"])
    _compare(tmp_path, ["-b", "a", "b"])
    _compare(tmp_path, ["-b", "-t"])
    _compare(tmp_path, ["-b", "syntax.cf"], {"syntax.cf": "no equals sign here\n"})
    _compare(tmp_path, ["-b", "undef.cf"],
             {"undef.cf": "failure_template = <<EOF\nSubject: x\n\n$no_such_name\nEOF\n"})
    # A parameter that exists, but not in a bounce process.
    _compare(tmp_path, ["-b", "smtpd.cf"],
             {"smtpd.cf": "failure_template = <<EOF\nSubject: x\n\n$smtpd_banner\nEOF\n"})


def test_parameters_a_bounce_process_knows_like_postfix(tmp_path):
    text = ("delay_template = <<EOF\nSubject: x\n\n$mail_name $mail_version $queue_directory "
            "$mydestination $relayhost $double_bounce_sender $notify_classes "
            "$bounce_size_limit $my_own_setting $delay_logging_resolution_limit\nEOF\n")
    _compare(tmp_path, ["-b", "known.cf"], {"known.cf": text},
             main_cf=MAIN_CF + "my_own_setting = mine ($myhostname)\n")
