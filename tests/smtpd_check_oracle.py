"""Debian's Postfix smtpd beside pyfix's access policy (daemons/smtpd/check): the
oracle of the smtpd_check tests.

CheckOracle starts Debian's Postfix master (tests/cleanup_oracle.py PostfixMaster) with
smtpd on a free loopback port, trivial-rewrite, cleanup and anvil, on a main.cf that lets
the test client (127.0.0.1) impersonate any client with XCLIENT. The same main.cf is read
by pyfix's Config, and a SmtpdCheck built from it resolves addresses through that very
trivial-rewrite. A Session (client identity, HELO, commands) is then played twice:
over SMTP against Postfix, and in-process through the smtpd/check seam, calling the
check methods where Postfix's smtpd.c calls smtpd_check_*(). Both give the list of
replies and the smtpd log lines of the access decisions, which the tests compare.
"""

import os
import re
import socket
import subprocess

from cleanup_oracle import PostfixMaster, log_lines, settle_log
from master_run import free_port, wait_until
from pyfix.common import msg
from pyfix.common.config import Config
from pyfix.common.quote_822 import unquote_822_local

POSTMAP = "/usr/sbin/postmap"

MASTER_CF = """\
{port} inet n - {chroot} - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
rewrite   unix  -       -       n       -       -       trivial-rewrite
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
"""

BASE_MAIN_CF = """\
smtpd_authorized_xclient_hosts = 127.0.0.1
mynetworks = 10.0.0.0/8
mydestination = $myhostname, localhost.$mydomain, localhost
local_recipient_maps =
smtpd_client_event_limit_exceptions = 127.0.0.0/8
"""

# The smtpd log lines that access decisions write; connect/disconnect and the like are
# the protocol's business (helperE's tests).
_DECISION = re.compile(r"^(NOQUEUE|[0-9A-F]{6,}): (reject|reject_warning|warn|info|hold|"
                       r"discard|filter|redirect|bcc|permit): |^warning: ")
_NOISE = re.compile(r"^warning: (dict_nis_init|.*: hostname .* verification failed|"
                    r"connect to private/anvil|Connection concurrency limit)")


class Client:
    """Who the client is, as XCLIENT sets it."""

    def __init__(self, name="client.example.net", addr="192.0.2.10", reverse_name=None,
                 name_status=2, reverse_status=None, helo=None, proto="ESMTP", xclient=True,
                 login=None):
        self.use_xclient = xclient
        self.login = login
        self.name = name
        self.addr = addr
        self.reverse_name = reverse_name if reverse_name is not None else name
        self.name_status = name_status
        self.reverse_status = reverse_status if reverse_status is not None else name_status
        self.helo = helo
        self.proto = proto

    def xclient(self):
        def value(name, status):
            if status == 2:
                return name
            return "[TEMPUNAVAIL]" if status == 4 else "[UNAVAILABLE]"
        parts = ["NAME=%s" % value(self.name, self.name_status),
                 "REVERSE_NAME=%s" % value(self.reverse_name, self.reverse_status),
                 "ADDR=%s" % self.addr, "PROTO=%s" % self.proto]
        if self.helo is not None:
            parts.append("HELO=%s" % self.helo)
        if self.login is not None:
            parts.append("LOGIN=%s" % self.login)
        return "XCLIENT " + " ".join(parts)


class State:
    """The seam's SmtpdState attributes for one in-process session (the parts of
    daemons/smtpd/state.py the checks read)."""

    def __init__(self, client):
        known = client.name_status == 2
        self.name = client.name if known else "unknown"
        self.reverse_name = client.reverse_name if client.reverse_status == 2 else "unknown"
        ipv6 = client.addr.lower().startswith("ipv6:")
        self.addr = client.addr[5:] if ipv6 else client.addr
        self.port = "4711"
        self.stand_alone = False                # smtpd -S (sendmail -bs) skips checks
        self.namaddr = "%s[%s]" % (self.name, self.addr)
        self.rfc_addr = client.addr
        self.addr_family = 10 if ipv6 else 2
        self.name_status = client.name_status
        self.reverse_name_status = client.reverse_status
        self.helo_name = client.helo
        self.protocol = client.proto
        self.sender = None
        self.recipient = None
        self.rcpt_count = 0
        self.queue_id = None
        self.where = "CONNECT"
        self.sasl_username = client.login
        self.sasl_method = "XCLIENT" if client.login else None
        self.sasl_sender = None
        self.tls_context = None
        self.discard = False
        self.saved_filter = self.saved_redirect = None
        self.saved_bcc = None
        self.saved_flags = 0
        self.prepend = None
        self.msg_size = 0
        self.error_count = 0
        self.junk_cmds = 0
        self.instance = "1.1"
        self.flags = 0
        self.dest_addr = "127.0.0.1"
        self.dest_port = "25"


def _keep_last_definitions(path):
    """A test's own setting replaces PostfixMaster's, without Postfix's `overriding
    earlier entry` warning in the log."""
    with open(path) as f:
        lines = f.read().splitlines()
    names = [line.partition("=")[0].strip() if line[:1] not in (" ", "\t", "#") and "=" in line
             else None for line in lines]
    # (The settings PostfixMaster writes are one line each.)
    keep = [line for index, line in enumerate(lines)
            if names[index] is None or names[index] not in names[index + 1:]]
    with open(path, "w") as f:
        f.write("\n".join(keep) + "\n")


def internal_address(text):
    """What smtpd's extract_addr() hands to the checks: the unquoted address."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if text.startswith("@") and ":" in text:       # the deprecated route is dropped
        text = text[text.index(":") + 1:]
    return unquote_822_local(text)


class CheckOracle:
    def __init__(self, main_cf="", tables=None, dns_server=None):
        """dns_server: a loopback DNS server (port 53) for both resolvers; then Postfix's
        smtpd runs chrooted into its queue directory, where etc/resolv.conf names it."""
        self.port = free_port()
        if dns_server is not None:
            main_cf += "pyfix_dns_servers = %s\n" % dns_server
        names = {line.partition("=")[0].strip() for line in main_cf.splitlines()}
        base = "".join(line + "\n" for line in BASE_MAIN_CF.splitlines()
                       if line.partition("=")[0].strip() not in names)
        self.postfix = PostfixMaster(base + main_cf)
        _keep_last_definitions(os.path.join(self.postfix.etc, "main.cf"))
        with open(os.path.join(self.postfix.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port="127.0.0.1:%d" % self.port,
                                     chroot="y" if dns_server else "n"))
        if dns_server is not None:
            os.makedirs(os.path.join(self.postfix.spool, "etc"))
            with open(os.path.join(self.postfix.spool, "etc", "resolv.conf"), "w") as f:
                f.write("nameserver %s\noptions attempts:1 timeout:2\n" % dns_server)
        for name, text in (tables or {}).items():
            path = os.path.join(self.postfix.etc, name)
            with open(path, "w") as f:
                f.write(text)
            if name.endswith(".hash"):
                subprocess.run([POSTMAP, "hash:" + path], check=True)
        self.check = None
        self.logged = []

    # -- lifetime -----------------------------------------------------------------------

    def start(self):
        self.postfix.start()
        assert wait_until(lambda: os.path.exists(
            os.path.join(self.postfix.spool, "private", "rewrite")), 15)
        assert wait_until(self._listening, 15)
        return self

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 1).close()
            return True
        except OSError:
            return False


    def cleanup(self):
        self.postfix.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def config(self):
        return Config.load(self.postfix.etc)

    def pyfix_check(self):
        """A SmtpdCheck of the same main.cf (built once per oracle)."""
        from pyfix.daemons.smtpd.check import SmtpdCheck
        if self.check is None:
            msg.add_output(self._capture)
            self.check = SmtpdCheck(self.config())
        return self.check

    def _capture(self, level, text):
        self.logged.append(msg.SEVERITY_PREFIX[level] + text)

    # -- Postfix over SMTP ----------------------------------------------------------------

    def postfix_session(self, client, commands):
        """The replies of Debian's smtpd (first line's code and text, joined) and its
        decision log lines."""
        start = len(self.postfix.log())
        replies = []
        with socket.create_connection(("127.0.0.1", self.port), 10) as sock:
            reader = sock.makefile("rb")
            _read_reply(reader)
            if client.use_xclient:
                sock.sendall(b"EHLO oracle.test\r\n")
                _read_reply(reader)
                sock.sendall(client.xclient().encode() + b"\r\n")
                reply = _read_reply(reader)
                assert reply.startswith("220"), reply
            for command in commands:
                sock.sendall(command.encode("utf-8", "surrogateescape") + b"\r\n")
                reply = _read_reply(reader)
                if command.upper() == "DATA" and reply.startswith("354"):
                    sock.sendall(b"Subject: test\r\n\r\nbody\r\n.\r\n")
                    reply = _read_reply(reader)
                replies.append(reply)
                if _hangs_up(reply):
                    break
            else:
                sock.sendall(b"QUIT\r\n")
                _read_reply(reader)
        text = settle_log(self.postfix)
        lines = [_QUEUE_ID.sub("QUEUEID: ", line[len("smtpd: "):])
                 for line in log_lines(text, start, ("smtpd",))]
        return replies, [line for line in lines if _DECISION.match(line)
                         and not _NOISE.match(line)]

    # -- pyfix in process --------------------------------------------------------------------

    def pyfix_session(self, client, commands):
        """The same session through the seam, calling the checks where smtpd.c does."""
        check = self.pyfix_check()
        state = State(client)
        self.logged = []
        replies = []
        if not check.delay_reject:
            reply = check.client(state)
            if reply is not None:
                return [str(reply)] * len(commands), self._decisions()
        for command in commands:
            replies.append(self._command(check, state, command))
            if _hangs_up(replies[-1]):
                break
        return replies, self._decisions()

    def _decisions(self):
        return [line for line in self.logged if _DECISION.match(line)
                and not _NOISE.match(line)]

    @staticmethod
    def _command(check, state, command):
        verb, _, arg = command.partition(" ")
        verb = verb.upper()
        if verb in ("HELO", "EHLO"):
            state.where = verb
            reply = None if check.delay_reject else check.helo(state, arg)
            if reply:
                return str(reply)
            state.helo_name = arg
            state.protocol = "ESMTP" if verb == "EHLO" else "SMTP"
            return "250 mx.example.com"
        if verb == "MAIL":
            state.where = "MAIL"
            address, *parameters = arg[arg.index(":") + 1:].split()
            sender = internal_address(address)
            for parameter in parameters:
                if parameter.upper().startswith("SIZE="):
                    state.msg_size = int(parameter[5:])
            state.sender = sender           # smtpd_check_size() logs the sender
            reply = check.size(state)
            state.sender = None
            if reply is None and not check.delay_reject:
                reply = check.mail(state, sender)
            if reply:
                return str(reply)
            state.sender = sender
            return "250 2.1.0 Ok"
        if verb == "RCPT":
            state.where = "RCPT"
            text = arg[arg.index(":") + 1:].strip()
            recipient = internal_address(text)
            if not check.address_ok(state, recipient):
                # What smtpd.c's extract_addr() logs and answers.
                msg.warn("Illegal address syntax from %s in RCPT command: %s"
                         % (state.namaddr, text))
                return "501 5.1.3 Bad recipient address syntax"
            reply = check.rcpt(state, recipient)
            if reply:
                return str(reply)
            state.recipient = recipient
            state.rcpt_count += 1
            state.queue_id = "QUEUEID"         # smtpd opens cleanup at the first recipient
            return "250 2.1.5 Ok"
        if verb == "ETRN":
            state.where = "ETRN"
            reply = check.etrn(state, arg)
            return str(reply) if reply else "250 Queuing started"
        if verb == "VRFY":
            state.where = "VRFY"
            reply = check.vrfy(state, internal_address(arg))
            return str(reply) if reply else "252 2.0.0 " + arg
        if verb == "DATA":
            if not state.rcpt_count:
                return "554 5.5.1 Error: no valid recipients"
            state.where = "DATA"
            reply = check.data(state)
            if reply:
                return str(reply)
            state.where = "END-OF-MESSAGE"
            reply = check.eod(state)
            _reset_transaction(state)
            return str(reply) if reply else "250 2.0.0 Ok: queued as QUEUEID"
        if verb == "RSET":
            _reset_transaction(state)
            return "250 2.0.0 Ok"
        raise ValueError(command)


def _hangs_up(reply):
    """smtpd disconnects after a 421 or 521 reply."""
    return reply.startswith("421") or reply.startswith("521")


def _reset_transaction(state):
    """smtpd's mail_reset(): what ends with the transaction."""
    state.sender = state.recipient = state.queue_id = None
    state.rcpt_count = 0
    state.discard = False
    state.saved_flags = 0
    state.saved_filter = state.saved_redirect = state.saved_bcc = state.prepend = None


_QUEUE_ID = re.compile(r"^[0-9A-F]{6,}: ")
_QUEUED = re.compile(r"^(250 2\.0\.0 Ok: queued as )\w+$")


def _read_reply(reader):
    """One SMTP reply; a multi-line one as its lines joined by newlines."""
    lines = []
    while True:
        line = reader.readline().decode("utf-8", "surrogateescape").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            break
    text = "\n".join(lines)
    return _QUEUED.sub(r"\1QUEUEID", text)


def compare(oracle, client, commands):
    """(postfix replies, pyfix replies, postfix log, pyfix log) of one session."""
    pf_replies, pf_log = oracle.postfix_session(client, commands)
    py_replies, py_log = oracle.pyfix_session(client, commands)
    return pf_replies, py_replies, pf_log, py_log


def postfix_available():
    from cleanup_oracle import postfix_available as available
    return available() and os.path.exists("/usr/lib/postfix/sbin/smtpd")
