"""common/maillog.py: the log tag, the syslog and postlog clients, the maillog_file fallback.

In-process tests: each binds the socket a real peer would own (a syslog socket at a path
given to the module, the postlog socket at $queue_directory/public/postlog) and checks the
exact bytes that arrive, or the file the fallback writes. The formats themselves are checked
against Debian's postlog in test_postlog.py.
"""

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import age_files

from pyfix.common import maillog, msg
from pyfix.common.config import Config
from pyfix.common.safe_open import safe_open, sane_dirname

PID = os.getpid()
LOGGER_LINE = re.compile(rb"^([A-Z][a-z]{2}) ([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ")
SYSLOG_HEAD = re.compile(rb"^<([0-9]+)>([A-Z][a-z]{2}) ([ 0-9][0-9]) "
                         rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ")


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def short_dir():
    """A directory with a short path: a unix socket path must stay under 108 bytes."""
    path = tempfile.mkdtemp(prefix="ml", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fresh(monkeypatch):
    """A clean logging state: no outputs, a new maillog client, no inherited exports."""
    monkeypatch.setattr(msg, "_outputs", [])
    monkeypatch.setattr(msg, "utf8_enable", True)
    monkeypatch.setattr(maillog, "_output", maillog.MaillogOutput())
    monkeypatch.setattr(maillog, "_maillog_file", None)
    monkeypatch.setattr(maillog, "_logfile_mode", maillog.LOGFILE_MODE)
    monkeypatch.setattr(maillog, "_fallback_guard", False)
    monkeypatch.setattr(maillog, "_task", None)
    for name in (maillog.LOGTAG_ENV, maillog.SERVICE_ENV, maillog.HOSTNAME_ENV):
        # set first, so that monkeypatch also undoes what init() exports
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    yield
    maillog._output.disconnect()
    maillog._output.syslog.close()


class Collector:
    """A bound unix socket that keeps what arrives."""

    def __init__(self, path, kind=socket.SOCK_DGRAM):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, kind)
        self.sock.bind(path)
        if kind == socket.SOCK_STREAM:
            self.sock.listen(1)
        self.sock.settimeout(5)
        self.conn = None

    def receive(self):
        if self.sock.type == socket.SOCK_STREAM:
            if self.conn is None:
                self.conn, _ = self.sock.accept()
                self.conn.settimeout(5)
            return self.conn.recv(65536)
        return self.sock.recv(65536)

    def nothing_waiting(self):
        self.sock.settimeout(0.2)
        try:
            self.sock.recv(65536)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(5)
        return False

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def syslogd(short_dir, monkeypatch, fresh):
    collector = Collector(os.path.join(short_dir, "log"))
    monkeypatch.setattr(maillog, "SYSLOG_PATH", collector.path)
    yield collector
    collector.close()


def make_config(directory, text):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "main.cf"), "w") as f:
        f.write(text)
    age_files(directory)
    return Config.load(directory)


def postlog_config(base, extra=""):
    """A config whose maillog_file is base/mail.log and queue directory base/q."""
    os.makedirs(os.path.join(base, "q", "public"), exist_ok=True)
    return make_config(os.path.join(base, "conf"),
                       "compatibility_level = 3.7\nmyhostname = mx1.example.com\n"
                       "queue_directory = %s/q\nmaillog_file = %s/mail.log\n"
                       "maillog_file_prefixes = %s\n%s" % (base, base, base, extra))


def strip_time(data):
    """The line with its timestamp checked (now, C locale, zero-padded day) and removed."""
    match = LOGGER_LINE.match(data)
    assert match, data
    now = time.localtime()
    assert match.group(1).decode() == time.strftime("%b", now) or now.tm_mday == 1
    return data[match.end():]


def strip_syslog_head(data):
    """(priority, rest) of a syslog datagram, its `%b %e %T` timestamp checked."""
    match = SYSLOG_HEAD.match(data)
    assert match, data
    day = match.group(3).decode()
    assert day == "%2d" % int(day)
    return int(match.group(1)), data[match.end():]


# -- the tag ---------------------------------------------------------------------------------

def test_tag_before_config_is_postfix_slash_program(fresh):
    assert maillog.mail_task("/usr/sbin/postlog") == "postfix/postlog"
    assert maillog.mail_task("smtpd") == "postfix/smtpd"
    assert maillog.mail_task("odd/") == "postfix/odd/"


def test_tag_before_config_takes_inherited_mail_logtag(fresh, monkeypatch):
    monkeypatch.setenv("MAIL_LOGTAG", "postfix-out")
    assert maillog.mail_task("qmgr") == "postfix-out/qmgr"
    monkeypatch.setenv("MAIL_LOGTAG", "")
    assert maillog.mail_task("qmgr") == "/qmgr"


def test_tag_after_config_is_syslog_name_and_is_exported(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("MAIL_LOGTAG", "inherited")
    config = make_config(str(tmp_path), "syslog_name = postfix-in\n")
    assert maillog.mail_task("cleanup", config) == "postfix-in/cleanup"
    assert os.environ["MAIL_LOGTAG"] == "postfix-in"


def test_tag_follows_service_overrides(fresh, tmp_path):
    """master.cf `-o syslog_name=postfix/$service_name` on service submission."""
    config = make_config(str(tmp_path), "compatibility_level = 3.7\n")
    config.set("service_name", "submission")
    config.set("syslog_name", "postfix/$service_name")
    assert maillog.mail_task("/usr/lib/postfix/sbin/smtpd", config) == \
        "postfix/submission/smtpd"


def test_tag_multi_instance_name(fresh, tmp_path):
    config = make_config(str(tmp_path), "multi_instance_name = postfix-b\n")
    assert maillog.mail_task("pickup", config) == "postfix-b/pickup"


def test_tag_none_repeats_the_last_one(fresh):
    assert maillog.mail_task(None) == "postfix/unknown"
    maillog.mail_task("postlogd")
    assert maillog.mail_task(None) == "postfix/postlogd"


# -- formats ---------------------------------------------------------------------------------

def test_timestamps_pad_the_day_differently():
    tm = time.struct_time((2024, 3, 4, 5, 6, 7, 0, 64, 0))
    assert maillog.logger_timestamp(tm) == "Mar 04 05:06:07 "
    assert maillog.syslog_timestamp(tm) == "Mar  4 05:06:07 "


def test_record_severity_and_2000_byte_cut():
    assert maillog.record(msg.INFO, "text") == b"text"
    assert maillog.record(msg.WARN, "text") == b"warning: text"
    assert maillog.record(msg.ERROR, "x") == b"error: x"
    assert maillog.record(msg.FATAL, "x") == b"fatal: x"
    assert maillog.record(msg.PANIC, "x") == b"panic: x"
    assert maillog.record(msg.WARN, "a" * 2500) == b"warning: " + b"a" * 2000
    # bytes, not characters: a UTF-8 character may be cut as C's %.*s cuts it
    assert maillog.record(msg.INFO, "a" + "\u00e9" * 1000) == \
        b"a" + "\u00e9".encode() * 999 + b"\xc3"


def test_logger_line_uses_first_host_label():
    line = maillog.logger_line("postfix/smtpd", "mx1.example.com", b"connect", pid=42)
    assert strip_time(line) == b"mx1 postfix/smtpd[42]: connect"


# -- syslog -------------------------------------------------------------------------------

def test_syslog_datagrams(syslogd):
    maillog.init("postfix/test", None)
    msg.info("connect from unknown[192.0.2.7]")
    msg.warn("a warning")
    msg.printf(msg.ERROR, "an error")
    msg.printf(msg.FATAL, "fatal text")
    msg.printf(msg.PANIC, "panic text")
    got = [strip_syslog_head(syslogd.receive()) for _ in range(5)]
    tag = b"postfix/test[%d]: " % PID
    assert got == [(2 << 3 | 6, tag + b"connect from unknown[192.0.2.7]"),
                   (2 << 3 | 4, tag + b"warning: a warning"),
                   (2 << 3 | 3, tag + b"error: an error"),
                   (2 << 3 | 2, tag + b"fatal: fatal text"),
                   (2 << 3 | 2, tag + b"panic: panic text")]


def test_syslog_facility_from_config(syslogd, tmp_path):
    config = make_config(str(tmp_path), "syslog_facility = local3\n")
    maillog.init(maillog.mail_task("qmgr", config), config)
    msg.warn("w")
    assert strip_syslog_head(syslogd.receive()) == (19 << 3 | 4,
                                                   b"postfix/qmgr[%d]: warning: w" % PID)


def test_syslog_bad_facility_is_fatal(syslogd, tmp_path):
    config = make_config(str(tmp_path), "syslog_facility = bogus\n")
    maillog.init("postfix/x", None)
    with pytest.raises(msg.Fatal):
        maillog.init("postfix/x", config)
    assert strip_syslog_head(syslogd.receive())[1] == (
        b"postfix/x[%d]: fatal: file %s/main.cf: parameter syslog_facility: "
        b"unrecognized value: bogus" % (PID, str(tmp_path).encode()))


def test_syslog_tag_with_pid_gets_no_second_pid(syslogd):
    maillog.init("postfix/smtpd[777]", None)
    msg.info("relayed")
    assert strip_syslog_head(syslogd.receive())[1] == b"postfix/smtpd[777]: relayed"


def test_syslog_cuts_text_at_2000_bytes(syslogd):
    maillog.init("postfix/t", None)
    msg.info("x" * 5000)
    assert strip_syslog_head(syslogd.receive())[1] == b"postfix/t[%d]: " % PID + b"x" * 2000


def test_syslog_reconnects_after_syslogd_restart(syslogd):
    maillog.init("postfix/t", None)
    msg.info("one")
    assert syslogd.receive().endswith(b": one")
    syslogd.sock.close()
    os.unlink(syslogd.path)
    msg.info("lost")                    # nobody listens: dropped quietly
    syslogd.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslogd.sock.bind(syslogd.path)
    syslogd.sock.settimeout(5)
    msg.info("two")
    assert syslogd.receive().endswith(b": two")


def test_syslog_stream_socket_records_end_in_nul(short_dir, monkeypatch, fresh):
    collector = Collector(os.path.join(short_dir, "slog"), socket.SOCK_STREAM)
    monkeypatch.setattr(maillog, "SYSLOG_PATH", collector.path)
    try:
        maillog.init("postfix/t", None)
        msg.info("streamed")
        data = collector.receive()
        assert data.endswith(b"postfix/t[%d]: streamed\0" % PID)
    finally:
        collector.close()


def test_no_syslog_socket_is_quiet(short_dir, monkeypatch, fresh, capfd):
    monkeypatch.setattr(maillog, "SYSLOG_PATH", os.path.join(short_dir, "absent"))
    maillog.init("postfix/t", None)
    msg.warn("nowhere")
    assert capfd.readouterr() == ("", "")


def test_stderr_copy(syslogd, capsys):
    maillog.init("postfix/postlog", None, stderr=True)
    msg.warn("both")
    assert capsys.readouterr().err == "postfix/postlog: warning: both\n"
    assert syslogd.receive().endswith(b"postfix/postlog[%d]: warning: both" % PID)
    maillog.init("other", None, stderr="renamed")
    msg.info("again")
    assert capsys.readouterr().err == "renamed: again\n"


# -- postlog ----------------------------------------------------------------------------------

def test_postlog_datagram(short_dir, fresh):
    config = postlog_config(short_dir)
    service = Collector(os.path.join(short_dir, "q", "public", "postlog"))
    try:
        maillog.init(maillog.mail_task("smtpd", config), config)
        msg.info("connect from localhost[127.0.0.1]")
        msg.warn("hostname nowhere does not resolve")
        first, second = service.receive(), service.receive()
    finally:
        service.close()
    assert strip_time(first) == b"mx1 postfix/smtpd[%d]: connect from localhost[127.0.0.1]" % PID
    assert strip_time(second) == \
        b"mx1 postfix/smtpd[%d]: warning: hostname nowhere does not resolve" % PID
    assert not os.path.exists(os.path.join(short_dir, "mail.log"))
    assert os.environ["POSTLOG_SERVICE"] == os.path.join(short_dir, "q", "public", "postlog")
    assert os.environ["POSTLOG_HOSTNAME"] == "mx1.example.com"


def test_postlog_service_name(short_dir, fresh):
    config = postlog_config(short_dir, "postlog_service_name = mylog\n")
    service = Collector(os.path.join(short_dir, "q", "public", "mylog"))
    try:
        maillog.init("postfix/t", config)
        msg.info("to mylog")
        assert strip_time(service.receive()) == b"mx1 postfix/t[%d]: to mylog" % PID
    finally:
        service.close()


def test_postlog_before_config_uses_environment(short_dir, fresh, monkeypatch):
    path = os.path.join(short_dir, "pl")
    monkeypatch.setenv("POSTLOG_SERVICE", path)
    monkeypatch.setenv("POSTLOG_HOSTNAME", "relay.example.net")
    service = Collector(path)
    try:
        maillog.init("postfix/early", None)
        msg.info("before main.cf")
        assert strip_time(service.receive()) == b"relay postfix/early[%d]: before main.cf" % PID
    finally:
        service.close()


def test_postlog_unknown_hostname(short_dir, fresh, monkeypatch):
    path = os.path.join(short_dir, "pl")
    monkeypatch.setenv("POSTLOG_SERVICE", path)
    service = Collector(path)
    try:
        maillog.init("postfix/early", None)
        msg.info("x")
        assert strip_time(service.receive()) == b"amnesiac postfix/early[%d]: x" % PID
    finally:
        service.close()


def test_syslog_mode_removes_postlog_exports(syslogd, monkeypatch, tmp_path):
    monkeypatch.setenv("POSTLOG_SERVICE", "/nowhere/postlog")
    monkeypatch.setenv("POSTLOG_HOSTNAME", "h")
    config = make_config(str(tmp_path), "compatibility_level = 3.7\n")
    maillog.init("postfix/t", config)
    assert "POSTLOG_SERVICE" not in os.environ and "POSTLOG_HOSTNAME" not in os.environ
    msg.info("syslog again")
    assert syslogd.receive().endswith(b"syslog again")


def test_fallback_writes_the_file(short_dir, fresh):
    config = postlog_config(short_dir)
    old = os.umask(0o022)
    try:
        maillog.init("postfix/postfix-script", config, fallback=True)
        msg.info("starting the Postfix mail system")
        msg.warn("second")
    finally:
        os.umask(old)
    path = os.path.join(short_dir, "mail.log")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[2] == b""
    assert strip_time(lines[0]) == \
        b"mx1 postfix/postfix-script[%d]: starting the Postfix mail system" % PID
    assert strip_time(lines[1]) == b"mx1 postfix/postfix-script[%d]: warning: second" % PID
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_fallback_after_socket_went_away(short_dir, fresh):
    """A socket file with no server behind it (postlogd stopped) is ECONNREFUSED."""
    config = postlog_config(short_dir)
    stale = Collector(os.path.join(short_dir, "q", "public", "postlog"))
    stale.sock.close()
    maillog.init("postfix/master", config, fallback=True)
    msg.info("daemon started")
    with open(os.path.join(short_dir, "mail.log"), "rb") as f:
        assert strip_time(f.read()) == b"mx1 postfix/master[%d]: daemon started\n" % PID


def test_no_fallback_loses_the_line(short_dir, fresh):
    config = postlog_config(short_dir)
    maillog.init("postfix/pickup", config)
    msg.info("lost")
    assert not os.path.exists(os.path.join(short_dir, "mail.log"))


def test_maillog_file_permissions_3_9(short_dir, fresh):
    config = postlog_config(short_dir, "maillog_file_permissions = 0600\n")
    maillog.init("postfix/t", config, fallback=True)
    msg.info("x")
    assert stat.S_IMODE(os.stat(os.path.join(short_dir, "mail.log")).st_mode) == 0o600


def test_maillog_file_permissions_bad_value(short_dir, fresh, capsys):
    config = postlog_config(short_dir, "maillog_file_permissions = 0666\n")
    msg.vstream_init("t")
    with pytest.raises(msg.Fatal):
        maillog.init("postfix/t", config, fallback=True)
    assert "parameter maillog_file_permissions: unrecognized value: 0666" in \
        capsys.readouterr().err


def test_maillog_file_prefix_check(short_dir, fresh, capsys):
    config = postlog_config(short_dir)
    config.set("maillog_file_prefixes", "/var, /dev/stdout")
    msg.vstream_init("postlog")
    with pytest.raises(msg.Fatal):
        maillog.init("postfix/t", config, fallback=True)
    assert capsys.readouterr().err == (
        "postlog: fatal: maillog_file value '%s/mail.log' does not match any prefix in "
        "maillog_file_prefixes\n" % short_dir)


def test_fallback_open_error_is_fatal(short_dir, fresh, capsys):
    config = postlog_config(short_dir)
    os.mkdir(os.path.join(short_dir, "mail.log"))
    maillog.init("postfix/t", config, stderr="postlog", fallback=True)
    with pytest.raises(msg.Fatal):
        msg.warn("cannot be written")
    assert capsys.readouterr().err == (
        "postlog: warning: cannot be written\n"
        "postlog: fatal: open logfile '%s/mail.log': cannot open file: Is a directory\n"
        % short_dir)


def test_fatal_error_while_the_fallback_fails_is_reported_once(short_dir, fresh, capsys):
    """msg_fatal() inside msg_fatal() says nothing more: the first fatal is the story."""
    config = postlog_config(short_dir)
    os.mkdir(os.path.join(short_dir, "mail.log"))
    maillog.init("postfix/t", config, stderr="postlog", fallback=True)
    with pytest.raises(msg.Fatal) as info:
        msg.fatal("outer problem", status=75)
    assert capsys.readouterr().err == "postlog: fatal: outer problem\n"
    assert info.value.code == 1         # the inner fatal's exit, as Postfix's _exit(1)


def test_fallback_refuses_symlink(short_dir, fresh, capsys):
    """A symlink is refused unless root owns it in a directory only root can write."""
    config = postlog_config(short_dir)
    elsewhere = os.path.join(short_dir, "elsewhere")
    open(elsewhere, "w").close()
    os.symlink(elsewhere, os.path.join(short_dir, "mail.log"))
    os.chmod(short_dir, 0o777)
    maillog.init("postfix/t", config, stderr="postlog", fallback=True)
    with pytest.raises(msg.Fatal):
        msg.info("x")
    assert capsys.readouterr().err == (
        "postlog: x\npostlog: fatal: open logfile '%s/mail.log': file is a symbolic link\n"
        % short_dir)
    assert os.path.getsize(elsewhere) == 0


def test_dev_stdout(short_dir):
    """maillog_file = /dev/stdout (postfix start-fg): lines reach the process's stdout."""
    os.makedirs(os.path.join(short_dir, "q", "public"))
    conf = os.path.join(short_dir, "conf")
    make_config(conf, "myhostname = box.example\nqueue_directory = %s/q\n"
                      "maillog_file = /dev/stdout\n" % short_dir)
    code = ("from pyfix.common import maillog, msg\n"
            "from pyfix.common.config import Config\n"
            "c = Config.load(%r)\n"
            "maillog.init('postfix/master', c, fallback=True)\n"
            "msg.info('daemon started -- version 3.7.11')\n" % conf)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert strip_time(out) == b"box postfix/master[%d]: daemon started -- version 3.7.11\n" \
        % proc.pid


# -- safe_open -------------------------------------------------------------------------------

def test_sane_dirname():
    assert sane_dirname("/dev/stdout") == "/dev"
    assert sane_dirname("name") == "."
    assert sane_dirname("/top") == "/"
    assert sane_dirname("a//b//") == "a"


def test_safe_open_refuses_hard_links_and_symlinks(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    os.link(target, tmp_path / "hard")
    result = safe_open(str(tmp_path / "hard"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    assert result.fd is None and result.why == "file has 2 hard links"
    os.unlink(tmp_path / "hard")
    os.symlink(target, tmp_path / "soft")
    os.chmod(tmp_path, 0o777)       # (root's link in a root-only directory would pass)
    result = safe_open(str(tmp_path / "soft"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    assert result.fd is None and result.why == "file is a symbolic link"


def test_safe_open_creates_and_reopens(tmp_path):
    path = str(tmp_path / "new")
    first = safe_open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    assert first.fd is not None
    os.close(first.fd)
    again = safe_open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    assert again.fd is not None
    os.close(again.fd)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 & ~_umask()


def _umask():
    old = os.umask(0)
    os.umask(old)
    return old
