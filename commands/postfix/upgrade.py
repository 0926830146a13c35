"""post-install upgrade-configuration (`postfix upgrade-configuration`) and the
first-install reminder.

The upgrade brings a master.cf and main.cf from an older Postfix up to date, in
post-install's order: services that Postfix releases added since 1.1 are appended when
missing (the test for each is post-install's grep pattern), a few obsolete settings are
edited in place (as post-install's ed scripts do, with ed's output: file size, old line,
new line, file size), hash_queue_names gets defer and deferred, and inet_protocols is
pinned to ipv4 when it is not set (Postfix's safety net for sites upgraded from before
2.9). main.cf is edited with pyfix's postconf -e.

pyfix's difference: the notices that post-install pipes through fmt(1) are wrapped by
Python's textwrap, which may break the lines at other places.
"""

import os
import re
import textwrap

from pyfix.common import msg

from pyfix.commands.postfix import tools

_SP = "[ \t]"

# (grep pattern, what the message calls it, the line appended when nothing matches).
_APPEND_EARLY = (
    ("^relay", "relay service", "relay\t  unix\t-\t-\tn\t-\t-\tsmtp"),
    ("^flush.*flush", "flush service",
     "flush     unix  -       -       n       1000?   0       flush"),
    ("trace.*bounce", "trace service", "trace\t  unix\t-\t-\tn\t-\t0\tbounce"),
    ("^verify.*verify", "verify service", "verify\t  unix\t-\t-\tn\t-\t1\tverify"),
)
_APPEND_LATE = (
    ("^proxymap.*proxymap", "proxymap service", "proxymap  unix\t-\t-\tn\t-\t-\tproxymap"),
    ("^anvil.*anvil", "anvil service", "anvil\t  unix\t-\t-\tn\t-\t1\tanvil"),
    ("^scache.*scache", "scache service", "scache\t  unix\t-\t-\tn\t-\t1\tscache"),
    ("^discard.*discard", "discard service", "discard\t  unix\t-\t-\tn\t-\t-\tdiscard"),
)
_APPEND_TLSMGR = (
    ("^tlsmgr.*tlsmgr", "tlsmgr service",
     "tlsmgr    unix  -       -       n       1000?   1       tlsmgr"),
    ("^retry.*error", "retry service",
     "retry     unix  -       -       n       -       -       error"),
    ("^proxywrite.*proxymap", "proxywrite service",
     "proxywrite unix -       -       n       -       1       proxymap"),
)
_APPEND_28 = (
    ("^#*smtp.*postscreen", "postscreen TCP service",
     "#smtp      inet  n       -       n       -       1       postscreen"),
    ("^#*smtpd.*smtpd", "smtpd unix-domain service",
     "#smtpd     pass  -       -       n       -       -       smtpd"),
    ("^#*dnsblog.*dnsblog", "dnsblog unix-domain service",
     "#dnsblog   unix  -       -       n       -       0       dnsblog"),
    ("^#*tlsproxy.*tlsproxy", "tlsproxy unix-domain service",
     "#tlsproxy  unix  -       -       n       -       0       tlsproxy"),
)
_APPEND_POSTLOG = (
    ("^postlog", "postlog unix-domain datagram service",
     "postlog   unix-dgram n  -       n       -       1       postlogd"),
)


class _MasterCf:
    """master.cf as lines, rewritten after every change (as each step of the script)."""

    def __init__(self, path):
        self.path = path

    def text(self):
        with open(self.path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")

    def write(self, text):
        with open(self.path, "wb") as f:
            f.write(text.encode("utf-8", "surrogateescape"))

    def grep(self, pattern):
        return any(re.search(pattern, line) for line in self.text().split("\n"))

    def append(self, pattern, what, line):
        if self.grep(pattern):
            return
        print("Editing %s, adding missing entry for %s" % (self.path, what))
        text = self.text()
        if text and not text.endswith("\n"):
            text += "\n"
        self.write(text + line + "\n")

    def edit(self, pattern, message, substitutions):
        """`ed` the first line that matches pattern with s/// commands, printing what ed
        prints (the size, the line found, the line changed, the size written)."""
        text = self.text()
        lines = text.split("\n")
        for index, line in enumerate(lines):
            if re.search(pattern, line):
                break
        else:
            return
        print("Editing %s, %s" % (self.path, message))
        print(len(text.encode("utf-8", "surrogateescape")))
        print(line)
        for old, new in substitutions:
            line = re.sub(old, new, line, count=1)
        print(line)
        lines[index] = line
        text = "\n".join(lines)
        self.write(text)
        print(len(text.encode("utf-8", "surrogateescape")))


def _postconf_edit(ctx, assignment):
    status = tools.run_pyfix_command("postconf", ["-c", ctx.config_dir, "-e", assignment],
                                     ctx.child_env)
    if status is None:
        msg.error("cannot update %s/main.cf: pyfix's postconf command is not installed"
                  % ctx.config_dir)
    return status == 0


def _fmt(text, blank_around=False):
    """Print text as post-install's `cat <<EOF | fmt`: indented paragraphs (and the blank
    lines that open and close some of its notices)."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    if blank_around:
        print()
    print("\n\n".join(textwrap.fill(p, 75, initial_indent="    ", subsequent_indent="    ",
                                    fix_sentence_endings=True)
                      for p in paragraphs if p))
    if blank_around:
        print()


def upgrade_configuration(ctx):
    """post-install's upgrade_conf step; False after a failure."""
    master = _MasterCf(os.path.join(ctx.config_dir, "master.cf"))
    try:
        for step in _APPEND_EARLY:
            master.append(*step)
        master.edit("^verify.*%s0%s*verify" % (_SP, _SP),
                    "setting verify process limit to 1",
                    [(r"([ \t])0([ \t])", r"\g<1>1\g<2>")])
        master.edit("^pickup%s*fifo%s*n%s*n" % (_SP, _SP, _SP),
                    "making the pickup service unprivileged", [(r"(n[ \t]*)n", r"\1-")])
        for name in ("cleanup", "flush"):
            master.edit("^%s%s*unix%s*[-y]" % (name, _SP, _SP),
                        "making the %s service public" % name, [("[-y]", "n")])
        if not _fix_hash_queue_names(ctx):
            return False
        for step in _APPEND_LATE:
            master.append(*step)
        master.edit("^tlsmgr%s*fifo%s" % (_SP, _SP),
                    "updating the tlsmgr from fifo to unix service",
                    [("fifo", "unix"), ("[0-9][0-9]*", r"\g<0>?")])
        for step in _APPEND_TLSMGR:
            master.append(*step)
        master.edit("^proxywrite.*-%s*proxymap" % _SP, "setting proxywrite process limit to 1",
                    [(r"-([ \t]*proxymap)", r"1\1")])
        for step in _APPEND_28:
            master.append(*step)
        if not _ipv4_safety_net(ctx):
            return False
        for step in _APPEND_POSTLOG:
            master.append(*step)
    except OSError as exc:
        msg.error("%s: %s" % (master.path, msg.strerror(exc)))
        return False
    return True


def _fix_hash_queue_names(ctx):
    found = ctx.config.raw("hash_queue_names") or ""
    missing = [name for name in ("defer", "deferred") if name not in found]
    if not missing:
        return True
    print("fixing main.cf hash_queue_names for missing %s" % " ".join(missing))
    return _postconf_edit(ctx, "hash_queue_names=%s%s"
                          % (found, "".join(" " + name for name in missing)))


def _ipv4_safety_net(ctx):
    if ctx.config.default("inet_protocols") == "ipv4" \
            or "inet_protocols" in ctx.config.main_cf.entries:
        return True
    _fmt("COMPATIBILITY: editing %s/main.cf, setting inet_protocols=ipv4.  Specify"
         " inet_protocols explicitly if you want to enable IPv6.  In a future release"
         " IPv6 will be enabled by default." % ctx.config_dir)
    return _postconf_edit(ctx, "inet_protocols=ipv4")


def first_install_reminder(ctx):
    aliases = (ctx.config.raw("alias_database") or "").split(":", 1)[-1]
    _fmt("Warning: you still need to edit myorigin/mydestination/mynetworks parameter"
         " settings in %s/main.cf.\n\nSee also"
         " http://www.postfix.org/STANDARD_CONFIGURATION_README.html for information"
         " about dialup sites or about sites inside a firewalled network.\n\nBTW: Check"
         " your %s file and be sure to set up aliases that send mail for root and"
         " postmaster to a real person, then run %s."
         % (ctx.config_dir, aliases, ctx.config.raw("newaliases_path")), blank_around=True)
