"""pipe(8): pyfix's agent beside Debian's /usr/lib/postfix/sbin/pipe.

Each scenario runs twice on tests/agent_rig.py's queue master (pyfix's master, cleanup
and qmgr): once with pyfix's pipe as the transport's agent, once with Debian's. The
command is tests/bin/pipe_recorder.py, which records its argv, standard input, uid,
gid, working directory and environment names and then exits as told; the records and
the log lines of qmgr and the agent (queue IDs, delays and paths masked) must be the
same on both sides.
"""

import os
import re

import pytest

from pyfix.queue import record as R

from agent_rig import (DEBIAN, PYFIX, AgentRig, agents_available, mask_message,
                       recorder_program,
                       open_dir, read_records)

pytestmark = pytest.mark.skipif(not agents_available(),
                                reason="needs root, Debian's Postfix daemons")

TRANSPORT = "transport_maps = inline:{pipe.example=rec:, Other.Example=rec:[Hop.Example]}\n"


def service(attributes, code=0, output="-", sleep=0, args="${sender} ${recipient}"):
    """The master.cf line of the `rec` transport running the recorder."""
    return ("rec unix - n n - - {agent:pipe} %s argv={recorder} {out} %d %s %s -- %s\n"
            % (attributes, code, output, sleep, args))


def run(side, master_cf, messages, main_cf_extra="", wait=r"status=\w+", count=None,
        reports=None):
    """One side: submit the messages, wait for their outcome; (log lines, records,
    queue IDs). reports: a list that gets the per-recipient fields of the delivery
    status notifications the sink received."""
    if "transport_maps" not in main_cf_extra:
        main_cf_extra = TRANSPORT + main_cf_extra
    rig = AgentRig(side, "", main_cf_extra)
    try:
        out = open_dir(rig.path("out"))
        recorder = recorder_program(rig)
        rig.master.write_master_cf(_services(rig, master_cf.replace(
            "{recorder}", recorder).replace("{out}", out)))
        rig.start_sink()
        rig.start()
        queue_ids = [rig.submit(**kw) for kw in messages]
        rig.wait_log(wait, count=count or len(messages))
        rig.quiet()
        records = read_records(out)
        lines = rig.agent_lines(queue_ids)
        if reports is not None:
            reports.extend(dsn_fields(rig.sink.messages()))
        return lines, _masked_records(records, queue_ids, rig.root), queue_ids
    finally:
        rig.cleanup()


DSN_FIELDS = ("Final-Recipient:", "Original-Recipient:", "Action:", "Status:",
              "Diagnostic-Code:")


def dsn_fields(messages):
    """The per-recipient DSN fields of the reports (with their continuation lines), one
    text per recipient, sorted (the recipients finish in any order)."""
    blocks = []
    for text in messages:
        in_fields = False
        for line in text.splitlines():
            if line.startswith("Final-Recipient:"):
                blocks.append([line])
            elif in_fields and line.startswith(DSN_FIELDS):
                blocks[-1].append(line)
            elif in_fields and line[:1] in (" ", "\t"):
                blocks[-1][-1] += "\n" + line
                continue
            in_fields = bool(blocks) and line.startswith(DSN_FIELDS)
    return sorted("\n".join(block) for block in blocks)


def _services(rig, extra):
    return rig.services(extra)


def _masked_records(records, queue_ids, root):
    out = []
    for rec in records:
        rec = dict(rec)
        rec["argv"] = [mask_message(arg, queue_ids) for arg in rec["argv"]]
        rec["stdin"] = mask_message(rec["stdin"], queue_ids).replace(root, "ROOT")
        rec["cwd"] = rec["cwd"].replace(root, "ROOT")
        out.append(rec)
    return out


def both(master_cf, messages, main_cf_extra="", **kw):
    ours = run(PYFIX, master_cf, messages, main_cf_extra, **kw)
    theirs = run(DEBIAN, master_cf, messages, main_cf_extra, **kw)
    return ours, theirs


CLIENT = [(R.ATTR, b"log_client_address=192.0.2.7"),
          (R.ATTR, b"log_client_name=client.example.net"),
          (R.ATTR, b"log_client_port=40123"), (R.ATTR, b"log_helo_name=helo.example"),
          (R.ATTR, b"log_protocol_name=ESMTPA"), (R.ATTR, b"sasl_method=PLAIN"),
          (R.ATTR, b"sasl_username=alice"), (R.ATTR, b"sasl_sender=boss@example.com")]
ALL_MACROS = ("${sender} ${recipient} ${nexthop} ${user} ${extension} ${mailbox} ${domain} "
              "${original_recipient} ${queue_id} ${size} ${client_address} ${client_helo} "
              "${client_hostname} ${client_port} ${client_protocol} ${sasl_method} "
              "${sasl_sender} ${sasl_username} $nexthop $(sender) pre${user}post $$literal")


def test_argv_macros_and_plain_copy_like_postfix():
    """Every macro; the per-recipient ones expand into one argument per recipient; the
    message is copied unchanged; the command runs as user= in $queue_directory with
    export_environment."""
    (ours, our_recs, _), (theirs, their_recs, _) = both(service("user=nobody",
                                                                args=ALL_MACROS), [
        dict(rcpts=("bob+ext@pipe.example", "carol@pipe.example", "+x@pipe.example"),
             envelope=CLIENT)], "recipient_delimiter = +\n")
    assert ours == theirs
    assert our_recs == their_recs
    assert len(our_recs) == 1
    assert our_recs[0]["uid"] == 65534
    assert any("status=sent (delivered via rec service)" in line for line in ours), ours


def test_flags_like_postfix():
    """flags=BDFORX.> with one recipient per delivery: From_, Return-Path:,
    X-Original-To:, Delivered-To:, escaped dots and From lines, the blank line;
    eol=\\r\\n; null_sender=; directory=."""
    master_cf = service("flags=BDFORX.> eol=\\r\\n null_sender=nobody@bounce.example "
                        "directory=/tmp user=nobody:nogroup")
    body = ("From the start", ".dot line", "..two dots", "From here", "end")
    messages = [dict(rcpts=("bob@pipe.example", "carol@pipe.example"), body=body),
                dict(sender="", rcpts=("dave@pipe.example",), body=body)]
    (ours, our_recs, _), (theirs, their_recs, _) = both(
        master_cf, messages, "rec_destination_recipient_limit = 1\n", count=3)
    assert ours == theirs
    assert sorted(map(str, our_recs)) == sorted(map(str, their_recs))
    assert len(our_recs) == 3
    assert any(">From here\r\n" in rec["stdin"] for rec in our_recs)


def test_address_folding_and_quoting_like_postfix():
    """flags=hqu: $recipient and $original_recipient quoted and case-folded, $nexthop and
    $domain folded; without them, as given."""
    args = "${sender} ${recipient} ${original_recipient} ${nexthop} ${domain} ${user}"
    master_cf = service("flags=hqu user=nobody", args=args) + service(
        "user=nobody", args=args).replace("rec unix", "raw unix")
    transport = "transport_maps = inline:{pipe.example=rec:, other.example=rec:[Hop.Example], raw.example=raw:}\n"
    messages = [dict(sender="Al Ice@Example.COM",
                     rcpts=("John Doe@Pipe.Example", "MiXed@Other.Example",
                            "Some One@Raw.Example"))]
    (ours, our_recs, _), (theirs, their_recs, _) = both(master_cf, messages, transport,
                                                        count=3)
    assert ours == theirs
    assert sorted(map(str, our_recs)) == sorted(map(str, their_recs))
    assert len(our_recs) == 3




EXIT_CASES = [("e%d" % code, code, "-") for code in range(64, 79)] + [
    ("e1", 1, "-"), ("e1out", 1, "{oops: it\\tfailed\\nbadly}"),
    ("e0out", 0, "{all fine\\n}"), ("dsn4", 1, "{4.7.1 try again later}"),
    ("dsn5", 75, "{5.1.1 no such mailbox here}"), ("e75out", 75, "{busy now}"),
    ("sig", -9, "-")]


def test_exit_status_mapping_like_postfix():
    """Each <sysexits.h> code, an unknown code, a status code in the output (it wins
    over the exit status), output after success, death by a signal."""
    master_cf = "".join(service("user=nobody", code, output).replace("rec unix",
                                                                     "%s unix" % name)
                        for name, code, output in EXIT_CASES)
    transport = "transport_maps = inline:{%s}\n" % ", ".join(
        "%s.example=%s:" % (name, name) for name, _, _ in EXIT_CASES)
    messages = [dict(rcpts=tuple("u@%s.example" % name for name, _, _ in EXIT_CASES))]
    wait = r"to=<u@.*status=\w+"
    our_reports, their_reports = [], []
    ours = run(PYFIX, master_cf, messages, transport, wait, len(EXIT_CASES), our_reports)[0]
    theirs = run(DEBIAN, master_cf, messages, transport, wait, len(EXIT_CASES),
                 their_reports)[0]
    assert ours == theirs
    # The bounce report: Status and Diagnostic-Code (x-unix; the sysexits text or the
    # command output) of each bounced recipient.
    assert our_reports == their_reports
    assert any(block.endswith("Diagnostic-Code: x-unix; user unknown")
               for block in our_reports), our_reports
    text = "\n".join(ours)
    assert "to=<u@e67.example>, relay=e67, delay=D, delays=D, dsn=5.1.1, " \
        "status=bounced (user unknown)" in text
    assert "to=<u@e75.example>, relay=e75, delay=D, delays=D, dsn=4.3.0, " \
        "status=deferred (temporary failure)" in text
    assert "status=sent (delivered via e0out service (all fine))" in text
    assert "status=deferred (Command died with signal 9:" in text


def test_time_limit_like_postfix():
    """A command that outlives rec_time_limit is killed (with its process group) and the
    message bounced: while it does not read a large message (the write times out) or
    after it took a small one (the read of its output times out)."""
    master_cf = service("user=nobody", 0, "{still busy}", 30)
    big = ["line %06d %s" % (n, "x" * 60) for n in range(5000)]
    (ours, recs, _), (theirs, _, _) = both(master_cf, [
        dict(sender="alice@discard.example", rcpts=("bob@pipe.example",)),
        dict(sender="alice@discard.example", rcpts=("big@pipe.example",), body=big)],
        "rec_time_limit = 1s\n", wait=r"to=<(bob|big)@.*status=\w+", count=2)
    assert ours == theirs
    assert "warning: pipe_command_read: read time limit exceeded" in ours
    assert "warning: pipe_command_write: write time limit exceeded" in ours
    assert sum('status=bounced (Command time limit exceeded: "ROOT/pipe_recorder". '
               'Command output: still busy)' in line for line in ours) == 2, ours
    assert len(recs) == 2


def test_refusals_like_postfix():
    """size= bounces a larger message, flag D bounces a Delivered-To loop and defers a
    multi-recipient delivery, an unknown macro defers."""
    master_cf = service("flags=D size=300 user=nobody") \
        + service("user=nobody", args="${sender} ${nosuchmacro}").replace("rec unix",
                                                                          "bad unix")
    transport = "transport_maps = inline:{pipe.example=rec:, bad.example=bad:}\n"
    messages = [dict(sender="alice@discard.example", rcpts=("bob@pipe.example",),
                     body=["x" * 200]),
                dict(sender="alice@discard.example", rcpts=("loop@pipe.example",),
                     headers=["Delivered-To: Loop@Pipe.Example"]),
                dict(sender="alice@discard.example",
                     rcpts=("one@pipe.example", "two@pipe.example")),
                dict(sender="alice@discard.example", rcpts=("x@bad.example",))]
    (ours, recs, _), (theirs, _, _) = both(master_cf, messages, transport,
                                           wait=r"to=<\w+@(pipe|bad).*status=\w+", count=5)
    assert ours == theirs
    text = "\n".join(ours)
    assert "status=bounced (message too large)" in text
    assert "status=bounced (mail forwarding loop for loop@pipe.example)" in text
    assert "warning: pipe flag `D' requires rec_destination_recipient_limit = 1" in text
    assert 'service bad: unknown macro name: "nosuchmacro"' in text
    assert recs == []


CONFIG_ERRORS = [
    ("user=root", "user= command-line attribute specifies root privileges"),
    ("user=postfix", "user= command-line attribute specifies mail system owner postfix"),
    ("user=nobody:postdrop", "user= command-line attribute specifies mail system postdrop"),
    ("user=nobody:root", "user= command-line attribute specifies privileged group id 0"),
    ("user=nosuchuser", "get_service_attr: unknown username: nosuchuser"),
    ("user=nobody:nosuchgroup", "get_service_attr: unknown group: nosuchgroup"),
    ("user=nobody flags=BZ", "unknown flag: Z (ignored)"),
    ("user=nobody size=12x", "get_service_attr: bad size= value: 12x"),
    ("bogus=1 user=nobody", "unknown attribute name: bogus=1"),
    ("", "missing user= command-line attribute"),
]


@pytest.mark.parametrize("attributes,error", CONFIG_ERRORS)
def test_configuration_errors_like_postfix(attributes, error):
    """Bad command attributes (root or the mail system's own ids, unknown names, flags,
    sizes) are fatal at the first delivery, with Postfix's words; the mail stays."""
    master_cf = service(attributes)

    def lines(side):
        rig_lines, recs, _ = run(side, master_cf, [dict(rcpts=("bob@pipe.example",))],
                                 wait="fatal: ", count=1)
        return sorted({line for line in rig_lines if "fatal" in line}), recs

    ours, theirs = lines(PYFIX), lines(DEBIAN)
    assert ours == theirs
    assert ours[1] == []
    assert any(error in line for line in ours[0]), ours


LDA = "/usr/lib/dovecot/dovecot-lda"


@pytest.mark.skipif(not os.path.exists(LDA), reason="needs Dovecot's dovecot-lda")
def test_dovecot_lda_behind_pipe_like_postfix():
    """Debian's dovecot-lda as the command (flags=DRO, one recipient per delivery): the
    Maildir it fills and the log lines are the same behind both agents."""
    import mailbox

    def one(side):
        rig = AgentRig(side, "", TRANSPORT + "rec_destination_recipient_limit = 1\n"
                       "export_environment = TZ MAIL_CONFIG LANG HOME={home} USER=lda\n")
        try:
            home = open_dir(rig.path("home"))
            conf = rig.path("dovecot.conf")
            with open(conf, "w") as f:
                f.write("base_dir = %s\nstate_dir = %s\nlog_path = /dev/null\n"
                        "protocols =\nssl = no\nmail_location = maildir:%s/Maildir\n"
                        % (rig.path("run"), rig.path("state"), home))
            edit_main_cf(rig, lambda text: text.replace("{home}", home))
            master_cf = ("rec unix - n n - - {agent:pipe} flags=DRO user=nobody argv=%s "
                         "-c %s -f ${sender} -a ${recipient}\n" % (LDA, conf))
            rig.master.write_master_cf(_services(rig, master_cf))
            rig.start_sink()
            rig.start()
            queue_ids = [rig.submit(rcpts=("bob@pipe.example", "carol@pipe.example"),
                                    headers=["Subject: via lda"])]
            rig.wait_log(r"to=<\w+@pipe.*status=\w+", count=2)
            rig.quiet()
            box = mailbox.Maildir(os.path.join(home, "Maildir"), create=False)
            messages = sorted(mask_message(m.as_string(), queue_ids) for m in box)
            return rig.agent_lines(queue_ids), messages
        finally:
            rig.cleanup()

    (ours, our_mail), (theirs, their_mail) = one(PYFIX), one(DEBIAN)
    assert ours == theirs
    assert our_mail == their_mail
    assert len(our_mail) == 2
    assert "Delivered-To: bob@pipe.example" in "".join(our_mail)
    assert sum("status=sent (delivered via rec service)" in line for line in ours) == 2


def edit_main_cf(rig, change):
    path = os.path.join(rig.master.etc, "main.cf")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(change(text))


def test_final_delivery_flag_in_success_dsn_like_postfix():
    """NOTIFY=SUCCESS: the success DSN says `relayed` without flag X and `delivered`
    with it (the X-Postfix-style Action: of the report the sender gets)."""
    master_cf = service("user=nobody") + service("flags=X user=nobody").replace(
        "rec unix", "fin unix")
    transport = "transport_maps = inline:{pipe.example=rec:, fin.example=fin:}\n"
    notify = [(R.DSN_NOTIFY, b"2")]
    messages = [dict(rcpts=("bob@pipe.example",), envelope=notify),
                dict(rcpts=("bob@fin.example",), envelope=notify)]

    def one(side):
        rig = AgentRig(side, "", transport)
        try:
            out = open_dir(rig.path("out"))
            rig.master.write_master_cf(_services(rig, master_cf.replace(
                "{recorder}", recorder_program(rig)).replace("{out}", out)))
            rig.start_sink()
            rig.start()
            queue_ids = [rig.submit(**kw) for kw in messages]
            rig.wait_log(r"delivery status notification", count=2)
            rig.wait_log(r"to=<alice@example.com>.*status=sent", count=2)
            rig.quiet()
            actions = sorted(line.strip() for text in rig.sink.messages()
                             for line in text.splitlines()
                             if line.startswith(("Action:", "Final-Recipient:")))
            # A report's size varies with its time stamps and IDs.
            lines = [re.sub(r"from=<>, size=\d+", "from=<>, size=N", line)
                     for line in rig.agent_lines(queue_ids)]
            return sorted(lines), actions
        finally:
            rig.cleanup()

    (ours, our_actions), (theirs, their_actions) = one(PYFIX), one(DEBIAN)
    assert ours == theirs
    assert our_actions == their_actions
    assert our_actions == ["Action: delivered", "Action: relayed",
                           "Final-Recipient: rfc822; bob@fin.example",
                           "Final-Recipient: rfc822; bob@pipe.example"]


def test_address_verification_only_like_postfix():
    """A `sendmail -bv` message: the command is not run; `delivers to command: ...`."""
    (ours, recs, _), (theirs, _, _) = both(service("user=nobody"), [
        dict(sender="alice@discard.example", rcpts=("bob@pipe.example",),
             envelope=[(R.ATTR, b"trace_flags=512")])],
        wait=r"delivery status notification")
    assert ours == theirs
    assert recs == []
    assert any("status=deliverable (delivers to command: ROOT/pipe_recorder)" in line
               for line in ours), ours


def test_command_that_cannot_start_like_postfix():
    """A missing program, a missing directory=: the child's fatal message is the
    command output and the delivery is deferred (EX_TEMPFAIL)."""
    master_cf = ("rec unix - n n - - {agent:pipe} user=nobody argv=/nonexistent/cmd "
                 "${recipient}\n"
                 "dir unix - n n - - {agent:pipe} user=nobody directory=/nonexistent/dir "
                 "argv=/bin/cat\n")
    transport = "transport_maps = inline:{pipe.example=rec:, dir.example=dir:}\n"
    (ours, _, _), (theirs, _, _) = both(master_cf, [
        dict(sender="alice@discard.example", rcpts=("bob@pipe.example", "x@dir.example"))],
        transport, wait=r"to=<\w+@(pipe|dir).*status=\w+", count=2)
    assert ours == theirs
    text = "\n".join(ours)
    assert "status=deferred (temporary failure. Command output: pipe: fatal: " \
        "pipe_command: execvp /nonexistent/cmd: No such file or directory )" in text


def test_large_message_and_command_that_does_not_read_like_postfix():
    """A message larger than a pipe buffer reaches the command whole; a command that
    exits without reading its input (EPIPE on our side) still counts as delivered."""
    master_cf = service("user=nobody") + \
        "quick unix - n n - - {agent:pipe} user=nobody argv=/bin/true\n"
    transport = "transport_maps = inline:{pipe.example=rec:, quick.example=quick:}\n"
    body = ["line %06d %s" % (n, "x" * 60) for n in range(5000)]
    (ours, our_recs, _), (theirs, their_recs, _) = both(master_cf, [
        dict(sender="alice@discard.example", rcpts=("bob@pipe.example",), body=body),
        dict(sender="alice@discard.example", rcpts=("q@quick.example",), body=body)],
        transport, wait=r"to=<\w+@(pipe|quick).*status=\w+", count=2)
    assert ours == theirs
    assert our_recs == their_recs
    assert our_recs[0]["stdin"].endswith("line 004999 %s\n" % ("x" * 60))
    assert sum("status=sent (delivered via" in line for line in ours) == 2


def test_chroot_like_postfix():
    """chroot= changes the root and working directory before the user switch (here the
    real root, so that the command still finds its programs)."""
    (ours, our_recs, _), (theirs, their_recs, _) = both(service("chroot=/ user=nobody"), [
        dict(rcpts=("bob@pipe.example",))])
    assert ours == theirs
    assert our_recs == their_recs
    assert our_recs[0]["cwd"] == "/"
