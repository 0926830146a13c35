"""master/master_ent.py: master's resolved view of master.cf.

Each case states the expected result literally. Where Postfix's own reader can confirm it,
the same case also runs through the oracle: a small program (ORACLE_C below) that links
Postfix's master_ent.c, master_conf.c and master_vars.c from the Postfix source tree
against Debian's libpostfix-*.so and prints every service it resolves, with Postfix's own
diagnostics on stderr. It opens no socket and starts no service. The oracle tests are
skipped where the source tree ($PYFIX_POSTFIX_SRC, default /tmp/pfsrc/postfix-3.7.11),
gcc or Debian's Postfix libraries are missing; the literal expectations still run.
"""

import ipaddress
import os
import shutil
import socket
import subprocess
import sys

import pytest

from pyfix.common import hostinfo, msg
from pyfix.common.config import Config
from pyfix.common.known_tcp_ports import filter_known_tcp_port, parse_known_tcp_ports
from pyfix.common.host_port import host_port
from pyfix.common.match_service import match_service_init, match_service_match
from pyfix.master import master_inet
from pyfix.master.master_ent import load_services

PROG = "master"
DAEMON_DIR = "/usr/lib/postfix/sbin"
# compatibility_level 3.7 keeps the chroot line quiet; inet_protocols = ipv4 keeps
# wildcard listeners the same on hosts without IPv6.
MAIN_CF = "compatibility_level = 3.7\ninet_protocols = ipv4\n"
PAST = 946684800


def has_ipv6():
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        return socket.getaddrinfo("::1", None, socket.AF_INET6) != []
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 on this host")


def write_config(directory, master_cf, main_cf=MAIN_CF):
    directory.mkdir(exist_ok=True)
    (directory / "main.cf").write_text(main_cf)
    (directory / "master.cf").write_text(master_cf)
    for name in ("main.cf", "master.cf"):
        os.utime(directory / name, (PAST, PAST))   # Postfix re-reads files newer than now
    return str(directory)


class Run:
    """What load_services() returned and wrote to stderr, or how it failed."""

    def __init__(self, services, stderr, status, config_dir):
        self.services = services
        self.stderr = stderr
        self.status = status
        self.config_dir = config_dir

    def only(self):
        assert len(self.services) == 1, self.services
        return self.services[0]

    def by_ext(self, ext_name):
        return next(s for s in self.services if s.ext_name == ext_name)


@pytest.fixture
def resolve(tmp_path, capsys):
    """resolve(master_cf, main_cf=MAIN_CF, **load_options) -> Run."""

    def run(master_cf, main_cf=MAIN_CF, **options):
        directory = write_config(tmp_path / "cf", master_cf, main_cf)
        capsys.readouterr()
        msg.init_stderr(PROG)
        services, status = [], 0
        try:
            services = load_services(Config.load(directory), **options)
        except SystemExit as exc:
            status = exc.code
        return Run(services, capsys.readouterr().err.replace(directory, "<DIR>"), status,
                   directory)

    return run


def fatal(text, line=1):
    return "%s: fatal: <DIR>/master.cf: line %d: %s\n" % (PROG, line, text)


# -- column defaults --------------------------------------------------------------------


def test_unix_service_defaults(resolve):
    run = resolve("rewrite unix - - - - - trivial-rewrite\n")
    service = run.only()
    assert run.stderr == ""
    assert (service.ext_name, service.name, service.type) == ("rewrite", "private/rewrite",
                                                               "unix")
    assert (service.private, service.unprivileged, service.chroot) == (True, True, False)
    assert (service.wakeup_time, service.conditional_wakeup) == (0, False)
    assert service.max_proc == 100
    assert service.path == DAEMON_DIR + "/trivial-rewrite"
    assert service.daemon_module == "pyfix.daemons.trivial_rewrite"
    assert service.args == ["trivial-rewrite", "-n", "rewrite", "-t", "unix", "-u"]
    assert service.throttle_delay == 60
    assert service.listen_fd_count == 1 and service.local_only


def test_explicit_columns(resolve):
    service = resolve("showq unix n n y 0 5 showq\n").only()
    assert service.name == "public/showq"
    assert (service.private, service.unprivileged, service.chroot) == (False, False, True)
    assert service.args == ["showq", "-t", "unix", "-c"]


@pytest.mark.parametrize("main_cf", ["", "compatibility_level = 0\n",
                                     "compatibility_level = 0.9\n"])
def test_chroot_default_below_level_1(resolve, main_cf):
    # master_ent.c get_str_ent(): the msg_info() line, once per `-` chroot field.
    run = resolve("pickup unix n - - 60 1 pickup\n# comment\n\n"
                  "qmgr unix n - n 300 1 qmgr\nx unix - - - - - error\n", main_cf)
    assert run.by_ext("pickup").chroot and "-c" in run.by_ext("pickup").args
    assert not run.by_ext("qmgr").chroot
    legacy = "master: <DIR>/master.cf: line %d: using backwards-compatible default setting " \
        "chroot=y\n"
    assert run.stderr == legacy % 1 + legacy % 5


@pytest.mark.parametrize("level", ["1", "2", "3.6", "3.10"])
def test_chroot_default_from_level_1(resolve, level):
    run = resolve("pickup unix n - - 60 1 pickup\n", "compatibility_level = %s\n" % level)
    assert not run.only().chroot and run.stderr == ""


def test_default_process_limit(resolve):
    service = resolve("cleanup unix n - n - - cleanup\n",
                      MAIN_CF + "default_process_limit = 7\n").only()
    assert service.max_proc == 7 and "-l" not in service.args and "-z" not in service.args


@pytest.mark.parametrize("column, max_proc, flag", [("0", 0, "-z"), ("1", 1, "-l"),
                                                     ("12x", 12, None), ("2", 2, None)])
def test_max_proc(resolve, column, max_proc, flag):
    service = resolve("cleanup unix n - n - %s cleanup\n" % column).only()
    assert service.max_proc == max_proc
    assert ("-z" in service.args, "-l" in service.args) == (flag == "-z", flag == "-l")


@pytest.mark.parametrize("column, seconds, conditional", [
    ("-", 0, False), ("0", 0, False), ("60", 60, False), ("1000?", 1000, True),
    ("0?", 0, False),           # master_ent.c: the `?` counts only for wakeup_time > 0
    ("60x", 60, False),         # atoi() stops at the first non-digit
])
def test_wakeup(resolve, column, seconds, conditional):
    service = resolve("flush unix n - n %s 0 flush\n" % column).only()
    assert (service.wakeup_time, service.conditional_wakeup) == (seconds, conditional)


def test_service_throttle_time(resolve):
    service = resolve("x unix - - n - - error\n", MAIN_CF + "service_throttle_time = 2m\n")
    assert service.only().throttle_delay == 120


# -- command and argv ----------------------------------------------------------------------


def test_argv_order(resolve):
    # master_ent.c builds: command -l|-z -n -t -d -v -u -c -o stress= -s, user args.
    run = resolve("submission inet n - y - 3 smtpd -o smtpd_tls_security_level=encrypt "
                  "-o { smtpd_client_restrictions = permit_sasl_authenticated, reject }\n",
                  MAIN_CF, detached=False, verbose=True)
    service = run.only()
    assert service.args == [
        "smtpd", "-n", "submission", "-t", "inet", "-d", "-v", "-u", "-c", "-o", "stress=",
        "-o", "smtpd_tls_security_level=encrypt",
        "-o", "smtpd_client_restrictions = permit_sasl_authenticated, reject"]
    assert service.child_argv(stressed=True)[9:11] == ["-o", "stress=yes"]
    assert service.child_argv() == service.args
    local = resolve("x unix - - n - 5 error -o stress=\n").only()
    assert local.stress_index is None and local.child_argv(stressed=True)[-1] == "stress="


def test_options_kept_as_written(resolve):
    # Only `{...}` arguments are unwrapped (extpar, stripped); the child reads -o itself.
    service = resolve("relay unix - - n - - smtp -oa=b -o{x=y} -o {  c = d  } { e f } {}"
                      " -v { } x{y}\n").only()
    assert service.args[6:] == ["-oa=b", "-o{x=y}", "-o", "c = d", "e f", "", "-v", "",
                                "x{y}"]


def test_braces_in_columns_are_plain_text(resolve):
    # master_ent.c reads the eight columns with mystrtok(): only later arguments group.
    run = resolve("{a unix - - n - - {x}\nb unix - - n - - { smtp } -o {c = d}\n")
    braced, spaced = run.services
    assert (braced.ext_name, braced.name, braced.command) == ("{a", "private/{a", "{x}")
    assert spaced.command == "{"
    assert spaced.args == ["{", "-n", "b", "-t", "unix", "-u", "smtp", "}", "-o", "c = d"]


def test_command_paths(resolve):
    run = resolve("policy unix - n n - 0 spawn user=nobody argv=/usr/bin/policyd\n"
                  "custom unix - n n - 1 my-daemon\n"
                  "abs unix - n n - 1 /usr/local/bin/abs\n"
                  "lmtp unix - - n - - lmtp\n")
    spawn, custom, absolute, lmtp = (run.by_ext(name) for name in
                                     ("policy", "custom", "abs", "lmtp"))
    assert spawn.daemon_module == "pyfix.daemons.spawn"
    assert spawn.args[:4] == ["spawn", "-z", "-n", "policy"]
    assert (custom.daemon_module, custom.path) == (None, DAEMON_DIR + "/my-daemon")
    # Postfix would exec <daemon_directory>//usr/local/bin/abs; pyfix runs the path itself.
    assert (absolute.daemon_module, absolute.path) == (None, "/usr/local/bin/abs")
    assert absolute.args[:3] == ["/usr/local/bin/abs", "-l", "-t"]   # basename == name
    assert lmtp.daemon_module == "pyfix.daemons.smtp" and lmtp.args[0] == "lmtp"


def test_daemon_directory_parameter(resolve):
    service = resolve("x unix - - n - - error\n", MAIN_CF + "daemon_directory = /opt/d\n")
    assert service.only().path == "/opt/d/error"


def test_continuation_lines_and_line_numbers(resolve):
    run = resolve("# head\n\nsmtp unix - - n - - smtp\n  -o a=b\n# inside\n  -o c=d\n"
                  "bad unix x - n - - smtp\n")
    assert run.stderr == fatal('field "private": bad value: "x"', line=7)


# -- types and internal names -------------------------------------------------------------


def test_local_types(resolve):
    run = resolve("postlog unix-dgram n - n - 1 postlogd\nold fifo n - n 60 1 pickup\n"
                  "smtpd pass - - n - 10 smtpd\nprv unix y - n - 2 error\n")
    postlog, old, passed, prv = run.services
    assert (postlog.name, postlog.type, postlog.local_only) == ("public/postlog",
                                                                "unix-dgram", True)
    assert (old.name, old.type) == ("public/old", "fifo")
    # pass services may face remote clients: they get the stress option.
    assert (passed.name, passed.local_only) == ("private/smtpd", False)
    assert passed.args == ["smtpd", "-t", "pass", "-u", "-o", "stress="]
    assert prv.name == "private/prv" and "stress=" not in prv.args


def test_inet_wildcard(resolve):
    service = resolve("smtp inet n - n - - smtpd\n").only()
    assert (service.name, service.inet_host, service.inet_port) == ("25", "", "smtp")
    assert service.listen_addresses == [master_inet.ListenAddress(socket.AF_INET, "0.0.0.0")]
    assert not service.local_only and not service.inet_host_given
    assert service.args == ["smtpd", "-n", "smtp", "-t", "inet", "-u", "-o", "stress="]


@needs_ipv6
def test_inet_wildcard_both_protocols(resolve):
    service = resolve("smtp inet n - n - - smtpd\n",
                      "compatibility_level = 3.7\ninet_protocols = all\n").only()
    assert [a.address for a in service.listen_addresses] == ["0.0.0.0", "::"]
    assert service.listen_fd_count == 2 and service.args[-2:] == ["-s", "2"]


@pytest.mark.parametrize("ext_name, name", [
    ("25", "25"), ("smtp", "25"), ("submission", "587"), ("smtps", "465"),
    ("submissions", "465"), ("lmtp", "24"),
    ("127.0.0.1:smtp", "[127.0.0.1]:25"), ("[127.0.0.1]:25", "[127.0.0.1]:25"),
    ("127.0.0.001:25", "[127.0.0.1]:25"),
    ("nosuchservice", "nosuchservice"), ("127.0.0.1:nosuch", "127.0.0.1:nosuch"),
])
def test_inet_canonical_names(resolve, ext_name, name):
    run = resolve("%s inet n - n - - smtpd\n" % ext_name)
    assert run.stderr == "" and run.only().name == name


@needs_ipv6
@pytest.mark.parametrize("ext_name", ["[::1]:25", "[ipv6:::1]:smtp", "[IPv6:0::1]:25",
                                      "::1:25"])
def test_inet_ipv6_hosts(resolve, ext_name):
    service = resolve("%s inet n - n - 5 smtpd\n" % ext_name,
                      "compatibility_level = 3.7\n").only()
    assert service.name == "[::1]:25" and service.inet_host_given
    assert service.listen_addresses == [master_inet.ListenAddress(socket.AF_INET6, "::1")]
    assert service.local_only and "stress=" not in service.args


def test_inet_symbolic_host(resolve):
    service = resolve("localhost:smtp inet n - n - - smtpd\n").only()
    assert service.name == "[localhost]:25"
    assert ("0.0.0.0" not in [a.address for a in service.listen_addresses])
    assert "127.0.0.1" in [a.address for a in service.listen_addresses]


def test_known_tcp_ports_setting(resolve):
    run = resolve("foo inet n - n - - smtpd\nsmtp inet n - n - - smtpd\n",
                  MAIN_CF + "known_tcp_ports = foo = 2525\n")
    assert [s.name for s in run.services] == ["2525", "25"]     # smtp via /etc/services


def test_inet_interfaces_loopback(resolve):
    service = resolve("smtp inet n - n - - smtpd\n",
                      MAIN_CF + "inet_interfaces = 127.0.0.1\n").only()
    assert [a.address for a in service.listen_addresses] == ["127.0.0.1"]
    assert service.local_only and "stress=" not in service.args


def test_inet_interfaces_change_is_ignored(resolve):
    run = resolve("smtp inet n - n - - smtpd\nx unix - - n - - error\n",
                  saved_interfaces="all")
    assert run.stderr == ""
    run = resolve("smtp inet n - n - - smtpd\n", MAIN_CF + "inet_interfaces = 127.0.0.1\n",
                  saved_interfaces="all")
    assert run.stderr.splitlines() == [
        "master: warning: service smtp: ignoring inet_interfaces change",
        "master: warning: to change inet_interfaces, stop and start Postfix"]
    assert [a.address for a in run.only().listen_addresses] == ["0.0.0.0"]


def test_address_order_is_postfix_order():
    if sys.byteorder != "little":
        pytest.skip("the order below is that of a little-endian host")
    item = lambda text: master_inet.ListenAddress(socket.AF_INET, text)   # noqa: E731
    found = master_inet.unique_addresses([item("10.0.0.2"), item("127.0.0.1"),
                                          item("10.0.0.2"), item("10.0.0.1")])
    # s_addr compared as a native integer: the last octet is the most significant.
    assert [a.address for a in found] == ["10.0.0.1", "127.0.0.1", "10.0.0.2"]


def test_no_valid_ip_address(resolve, monkeypatch):
    # master_ent.c: `no valid IP address found: %s` when the address list is empty.
    monkeypatch.setattr(hostinfo, "local_interfaces", lambda families: [
        (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("255.255.255.0"))])
    run = resolve("smtp inet n - n - - smtpd\n", MAIN_CF + "inet_interfaces = loopback-only\n")
    assert run.stderr == fatal("no valid IP address found: smtp")


# -- duplicates and disabled services -----------------------------------------------------


DUPLICATE_CASES = [
    ("smtp inet n - n - - smtpd\nsmtp inet n - n - 3 smtpd -v\n", "smtp", "25"),
    ("smtp inet n - n - - smtpd\n25 inet n - n - 3 smtpd -v\n", "smtp", "25"),
    ("127.0.0.1:25 inet n - n - - smtpd\n[127.0.0.1]:smtp inet n - n - 3 smtpd -v\n",
     "127.0.0.1:25", "[127.0.0.1]:25"),
    ("cleanup unix n - n - 0 cleanup\ncleanup unix n n n - 3 cleanup -v\n", "cleanup",
     "public/cleanup"),
]


@pytest.mark.parametrize("master_cf, ext_name, name", DUPLICATE_CASES)
def test_duplicate_entry(resolve, master_cf, ext_name, name):
    run = resolve("first unix - - n - - error\n" + master_cf + "last unix - - n - - error\n")
    assert run.stderr == ('master: warning: duplicate master.cf entry for service "%s" (%s) '
                          "-- using the last entry\n" % (ext_name, name))
    assert [s.ext_name for s in run.services][0::2] == ["first", "last"]
    winner = run.services[1]
    assert winner.max_proc == 3 and winner.args[-1] == "-v" and winner.line == 3


def test_same_name_different_class_is_no_duplicate(resolve):
    run = resolve("x unix n - n - - error\nx unix y - n - - error\nx fifo n - n - - error\n")
    assert run.stderr == "" and [s.name for s in run.services] == ["public/x", "private/x",
                                                                   "public/x"]


@pytest.mark.parametrize("setting, left", [
    ("inet", ["pickup", "cleanup"]),
    ("smtp/inet", ["pickup", "cleanup"]),
    ("SMTP/INET, cleanup.unix", ["pickup"]),            # case-insensitive; old x.y form
    ("!pickup/unix unix", ["pickup", "smtp"]),           # first match decides
    ("unix,inet", []),
])
def test_master_service_disable(resolve, setting, left):
    run = resolve("smtp inet n - n - - smtpd\npickup unix n - n 60 1 pickup\n"
                  "cleanup unix n - n - 0 cleanup\n"
                  "bogus unix bad bad bad bad bad\n",        # disabled lines are not checked
                  MAIN_CF + "master_service_disable = %s, bogus/unix\n" % setting)
    assert run.stderr == "" and sorted(s.ext_name for s in run.services) == sorted(left)


def test_no_inet_protocols_disables_inet(resolve):
    run = resolve("smtp inet n - n - - smtpd\n1.2.3.4:bad inet y y y y y y\n"
                  "pickup unix n - n 60 1 pickup\n", "compatibility_level = 3.7\n"
                  "inet_protocols =\n")
    assert [s.ext_name for s in run.services] == ["pickup"]
    assert run.stderr == (
        "master: warning: all network protocols are disabled (inet_protocols = )\n"
        'master: warning: disabling all type "inet" services in master.cf\n')


# -- errors ---------------------------------------------------------------------------------


ERROR_CASES = [
    # (master.cf line, the text after "<file>: line 1: ")
    ("smtp", 'missing "transport type" field'),
    ("smtp unix", 'missing "private" field'),
    ("smtp unix -", 'missing "unprivileged" field'),
    ("smtp unix - -", 'missing "chroot" field'),
    ("smtp unix - - n", 'missing "wakeup_time" field'),
    ("smtp unix - - n -", 'missing "max_proc" field'),
    ("smtp unix - - n - -", 'missing "command" field'),
    ("smtp - - - n - - smtp", 'field "transport type" has no default value'),
    ("smtp unix - - n - - -", 'field "command" has no default value'),
    ("smtp tcp - - n - - smtp", "bad transport type: tcp"),
    ("smtp INET n - n - - smtpd", "bad transport type: INET"),
    ("{smtp unix} - - n - - smtpd", "bad transport type: unix}"),
    ("smtp unix x - n - - smtp", 'field "private": bad value: "x"'),
    ("smtp unix yes - n - - smtp", 'field "private": bad value: "yes"'),
    ("smtp unix - Y n - - smtp", 'field "unprivileged": bad value: "Y"'),
    ("smtp unix - - 1 - - smtp", 'field "chroot": bad value: "1"'),
    ("smtp unix - - n x - smtp", 'field "wakeup_time": bad value: "x"'),
    ("smtp unix - - n ?60 - smtp", 'field "wakeup_time": bad value: "?60"'),
    ("smtp unix - - n -1 - smtp", 'field "wakeup_time": bad value: "-1"'),
    ("smtp unix - - n 4294967295 - smtp", 'field "wakeup_time": bad value: "4294967295"'),
    ("smtp unix - - n - many smtp", 'field "max_proc": bad value: "many"'),
    ("smtp unix - - n - 99999999999999999999 smtp",
     'field "max_proc": bad value: "99999999999999999999"'),
    ("smtp inet - - n - - smtpd", "inet service cannot be private"),
    ("smtp inet y - n - - smtpd", "inet service cannot be private"),
    ("[127.0.0.1:25 inet n - n - - smtpd", 'missing "]" in "[127.0.0.1:25"'),
    ("[127.0.0.1]x inet n - n - - smtpd", 'garbage after "]" in "[127.0.0.1]x"'),
    ("[ipv6:1.2.3.4]:25 inet n - n - - smtpd",
     'malformed IPv6 address in "[ipv6:1.2.3.4]:25"'),
    ("[127.0.0.1] inet n - n - - smtpd", 'missing service information in "[127.0.0.1]"'),
    ("127.0.0.1: inet n - n - - smtpd", 'missing service information in "127.0.0.1:"'),
    ("bad..name:25 inet n - n - - smtpd",
     'valid hostname or network address required in "bad..name:25"'),
    ("[]:25 inet n - n - - smtpd", 'valid hostname or network address required in "[]:25"'),
    ("25x inet n - n - - smtpd", 'garbage after numerical service in "25x"'),
    ("[ipv6:::1]:25 inet n - n - - smtpd", "bad hostname or network address: [ipv6:::1]:25"),
    ("smtp unix - - n - - smtp {a b", "missing '}' in \"{a b\""),
    ("smtp unix - - n - - smtp {a}b", "syntax error after '}' in \"{a}b\""),
]


@pytest.mark.parametrize("line, text", ERROR_CASES)
def test_error_messages(resolve, line, text):
    run = resolve(line + "\n")
    assert run.status == 1 and run.stderr == fatal(text)


def test_missing_master_cf(tmp_path, capsys):
    directory = write_config(tmp_path / "cf", "")
    os.unlink(os.path.join(directory, "master.cf"))
    msg.init_stderr(PROG)
    with pytest.raises(SystemExit):
        load_services(Config.load(directory))
    assert capsys.readouterr().err == (
        "master: fatal: open %s/master.cf: No such file or directory\n" % directory)


# -- the helpers of common/ ----------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("25", ("", "25", None)), (":25", ("", "25", None)), ("h.example:smtp", ("h.example",
                                                                             "smtp", None)),
    ("[::1]:25", ("::1", "25", None)), ("[ipv6:::1]:25", ("::1", "25", None)),
    ("1.2.3.4:", (None, None, "missing service information")),
    ("-bad-:25", (None, None, "valid hostname or network address required")),
    ("123:25", (None, None, "valid hostname or network address required")),
    ("0.1.2.3:25", (None, None, "valid hostname or network address required")),
])
def test_host_port(text, expected):
    assert host_port(text, "", None) == expected


def test_known_tcp_ports_parsing(capsys):
    msg.init_stderr(PROG)
    table = parse_known_tcp_ports("lmtp=24, smtp=25, smtps=submissions=465, 7=8, x=y, "
                                  "smtp=26, a b=1, c=1 2, d")
    assert table == {"lmtp": "24", "smtp": "25", "smtps": "465", "submissions": "465"}
    assert capsys.readouterr().err.splitlines() == [
        'master: warning: known_tcp_ports: in " 7=8": numerical service name',
        'master: warning: known_tcp_ports: in " x=y": non-numerical service port',
        'master: warning: known_tcp_ports: in " smtp=26": duplicate service name',
        'master: warning: known_tcp_ports: in " a b=1": whitespace in service name',
        'master: warning: known_tcp_ports: in " c=1 2": whitespace in port number',
        'master: warning: known_tcp_ports: in " d" is not in "name = value" form']
    assert filter_known_tcp_port(table, "smtps") == "465"
    assert filter_known_tcp_port(table, "2525") == "2525"
    assert filter_known_tcp_port(table, "other") == "other"


def test_match_service():
    patterns = match_service_init("!smtp/inet, inet, old.fifo")
    assert not match_service_match(patterns, "smtp/inet")
    assert match_service_match(patterns, "submission/inet")
    assert match_service_match(patterns, "old/fifo")
    assert not match_service_match(patterns, "pickup/unix")
    assert not match_service_match(match_service_init(""), "smtp/inet")


# -- the same cases through Postfix's own reader -------------------------------------------


POSTFIX_SRC = os.environ.get("PYFIX_POSTFIX_SRC", "/tmp/pfsrc/postfix-3.7.11")
POSTFIX_LIBS = "/usr/lib/postfix"

ORACLE_C = r"""
/* Runs Postfix's master.cf reader on config directory argv[1] and prints each
 * service; argv[2] "d" acts like master -d. Starts no service. */
#include <sys_defs.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <msg.h>
#include <msg_vstream.h>
#include <vstream.h>
#include <argv.h>
#include <inet_proto.h>
#include <inet_addr_list.h>
#include <sock_addr.h>
#include <myaddrinfo.h>
#include <mail_params.h>
#include <mail_conf.h>
#include "master.h"

MASTER_SERV *master_head;
int     master_detach = 1;
int     init_mode = 0;

void    master_start_service(MASTER_SERV *serv) { }
void    master_stop_service(MASTER_SERV *serv) { }
void    master_restart_service(MASTER_SERV *serv, int conf_reload) { }

static const char *type_name(int type)
{
    switch (type) {
    case MASTER_SERV_TYPE_UNIX: return "unix";
    case MASTER_SERV_TYPE_INET: return "inet";
    case MASTER_SERV_TYPE_FIFO: return "fifo";
    case MASTER_SERV_TYPE_PASS: return "pass";
    case MASTER_SERV_TYPE_UXDG: return "unix-dgram";
    }
    return "?";
}

/* Postfix sleeps a second before a fatal exit; the tests need not wait. */
static void exit_now(void)
{
    vstream_fflush(VSTREAM_ERR);
    _exit(1);
}

int     main(int argc, char **argv)
{
    MASTER_SERV *serv;
    MAI_HOSTADDR_STR addr;
    struct sockaddr_storage *sa;
    int     n;

    var_procname = "master";
    msg_vstream_init("master", VSTREAM_ERR);
    msg_cleanup(exit_now);
    if (argc > 2 && strcmp(argv[2], "d") == 0)
        master_detach = 0;
    setenv("MAIL_CONFIG", argv[1], 1);
    master_vars_init();
    (void) inet_proto_init(VAR_INET_PROTOCOLS, var_inet_protocols);
    master_config();
    for (serv = master_head; serv; serv = serv->next) {
        vstream_printf("service %s|%s|%s|%d|%d|%d|%d|%d|%d|%s\n",
                       serv->ext_name, serv->name, type_name(serv->type),
                       (serv->flags & MASTER_FLAG_CONDWAKE) != 0,
                       (serv->flags & MASTER_FLAG_INETHOST) != 0,
                       (serv->flags & MASTER_FLAG_LOCAL_ONLY) != 0,
                       serv->wakeup_time, serv->max_proc,
                       serv->listen_fd_count, serv->path);
        if (serv->type == MASTER_SERV_TYPE_INET) {
            for (n = 0; n < MASTER_INET_ADDRLIST(serv)->used; n++) {
                sa = MASTER_INET_ADDRLIST(serv)->addrs + n;
                SOCKADDR_TO_HOSTADDR(SOCK_ADDR_PTR(sa), SOCK_ADDR_LEN(sa),
                                     &addr, (MAI_SERVPORT_STR *) 0, 0);
                vstream_printf("addr %s\n", addr.buf);
            }
        }
        for (n = 0; n < serv->args->argc; n++)
            vstream_printf("arg %s\n", serv->args->argv[n]);
    }
    vstream_fflush(VSTREAM_OUT);
    return (0);
}
"""


@pytest.fixture(scope="session")
def postfix_reader(tmp_path_factory):
    """The path of the compiled oracle program, or skip."""
    src = os.path.join(POSTFIX_SRC, "src")
    libs = [os.path.join(POSTFIX_LIBS, "libpostfix-%s.so" % n) for n in ("global", "util")]
    if not os.path.exists(os.path.join(src, "master", "master_ent.c")):
        pytest.skip("Postfix source tree not found (set PYFIX_POSTFIX_SRC)")
    if not shutil.which("gcc") or not all(os.path.exists(lib) for lib in libs):
        pytest.skip("gcc or Debian's Postfix libraries are missing")
    work = tmp_path_factory.mktemp("oracle")
    (work / "oracle.c").write_text(ORACLE_C)
    program = str(work / "master_ent_oracle")
    sources = [os.path.join(src, "master", name) for name in
               ("master_ent.c", "master_conf.c", "master_vars.c", "master_watch.c")]
    build = subprocess.run(
        ["gcc", "-w", "-DLINUX6"] + ["-I" + os.path.join(src, d) for d in
                                     ("util", "global", "master")]
        + ["-o", program, str(work / "oracle.c")] + sources
        + ["-L" + POSTFIX_LIBS, "-Wl,-rpath," + POSTFIX_LIBS, "-lpostfix-global",
           "-lpostfix-util"], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.skip("could not build the oracle: " + build.stderr[-500:])
    return program


def render(services, daemon_dir=DAEMON_DIR):
    """pyfix's services in the oracle's format (Postfix keeps them newest first)."""
    lines = []
    for s in reversed(services):
        # Postfix prefixes daemon_directory even to an absolute command.
        path = daemon_dir + "/" + s.command if s.command.startswith("/") else s.path
        lines.append("service %s|%s|%s|%d|%d|%d|%d|%d|%d|%s" % (
            s.ext_name, s.name, s.type, s.conditional_wakeup, s.inet_host_given,
            s.local_only, s.wakeup_time, s.max_proc, s.listen_fd_count, path))
        lines += ["addr " + a.address for a in s.listen_addresses]
        lines += ["arg " + arg for arg in s.args]
    return "".join(line + "\n" for line in lines)


def compare_with_postfix(program, run, detached=True):
    """Postfix's reader on the directory of a pyfix run: same services, same stderr."""
    proc = subprocess.run([program, run.config_dir] + ([] if detached else ["d"]),
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert (run.stderr, run.status) == (proc.stderr.replace(run.config_dir, "<DIR>"),
                                        proc.returncode)
    if proc.returncode == 0:
        assert render(run.services) == proc.stdout


SERVICE_CASES = [
    ("stock", "smtp inet n - y - - smtpd\npickup unix n - y 60 1 pickup\n"
     "cleanup unix n - y - 0 cleanup\nqmgr unix n - n 300 1 qmgr\n"
     "tlsmgr unix - - y 1000? 1 tlsmgr\nrewrite unix - - y - - trivial-rewrite\n"
     "bounce unix - - y - 0 bounce\nflush unix n - y 1000? 0 flush\n"
     "relay unix - - y - - smtp\n  -o syslog_name=postfix/$service_name\n"
     "local unix - n n - - local\npostlog unix-dgram n - n - 1 postlogd\n"
     "maildrop unix - n n - - pipe\n  flags=DRXhu user=vmail argv=/usr/bin/maildrop"
     " -d ${recipient}\n", MAIN_CF),
    ("defaults level 0", "a unix - - - - - error\nb inet n - - - - smtpd\n"
     "c fifo - - - 0? 0 pickup\nd pass - - - 60x 5x smtpd\n",
     "inet_protocols = ipv4\ndefault_process_limit = 9\n"),
    ("arguments", "submission inet n - n - - smtpd -o { a = b } -oc=d {x y} {} { }\n"
     "   -v -- {z}\n", MAIN_CF),
    ("inet names", "smtps inet n - n - - smtpd\n127.0.0.1:submission inet n - n - - smtpd\n"
     "127.0.0.001:25 inet n - n - - smtpd\nnosuch inet n - n - - smtpd\n"
     "1.2.3.4:nosuch inet n - n - - smtpd\nlocalhost:smtp inet n - n - - smtpd\n"
     "foo inet n - n - - smtpd\n", MAIN_CF + "known_tcp_ports = foo=2525, lmtp=24\n"),
    ("interfaces", "smtp inet n - n - - smtpd\n", MAIN_CF + "inet_interfaces = 127.0.0.1\n"),
    ("loopback-only", "smtp inet n - n - - smtpd\n",
     "compatibility_level = 3.7\ninet_interfaces = loopback-only\n"),
    ("both protocols", "smtp inet n - n - - smtpd\n[::1]:25 inet n - n - - smtpd\n",
     "compatibility_level = 3.7\ninet_protocols = all\n"),
    ("duplicates", "".join(case[0] for case in DUPLICATE_CASES), MAIN_CF),
    ("disabled", "smtp inet n - n - - smtpd\npickup unix n - n 60 1 pickup\n"
     "bogus unix x x x x x\n", MAIN_CF + "master_service_disable = !smtp/inet, PICKUP.unix "
     "bogus/unix\n"),
    ("no protocols", "smtp inet n - n - - smtpd\npickup unix n - n 60 1 pickup\n",
     "inet_protocols =\nknown_tcp_ports = smtp, x=y=, a b=7\n"),
    ("absolute command", "foo unix - n n - - /usr/bin/foo\nbar unix - n n - 1 bin/bar\n",
     MAIN_CF),
    ("braces in columns", "{a unix - - n - - {x}\nb unix - - n - - { smtp } -o {c = d}\n",
     MAIN_CF),
]


@pytest.mark.parametrize("label, master_cf, main_cf", SERVICE_CASES,
                         ids=[case[0] for case in SERVICE_CASES])
def test_services_match_postfix(postfix_reader, resolve, label, master_cf, main_cf):
    if "inet_protocols = all" in main_cf and not has_ipv6():
        pytest.skip("no IPv6 on this host")
    compare_with_postfix(postfix_reader, resolve(master_cf, main_cf))


def test_not_detached_matches_postfix(postfix_reader, resolve):
    run = resolve("smtp inet n - n - - smtpd\npickup unix n - n 60 1 pickup\n",
                  detached=False)
    compare_with_postfix(postfix_reader, run, detached=False)


@pytest.mark.parametrize("line, text", ERROR_CASES)
def test_errors_match_postfix(postfix_reader, resolve, line, text):
    compare_with_postfix(postfix_reader, resolve("ok unix - - n - - error\n" + line + "\n"))


def test_chroot_default_matches_postfix(postfix_reader, resolve):
    compare_with_postfix(postfix_reader, resolve(
        "pickup unix n - - 60 1 pickup\n# comment\n\nqmgr unix n - n 300 1 qmgr\n"
        "x unix - - - - - error\n", "compatibility_level = 0\n"))
