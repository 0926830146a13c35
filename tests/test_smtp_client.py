"""smtp(8)/lmtp(8), the delivery agent: pyfix's beside Debian's on the same queue
master (tests/qmgr_rig.py: Debian's qmgr, trivial-rewrite and bounce on both sides),
the same message and the same destination (Debian's smtp-sink, whose options make it
answer 4xx/5xx per command). The smtp log lines (status=sent/deferred/bounced, the
`connect to ...` and `host ... said:` texts) and what the sink received are compared
after masking queue IDs, delays, ports and pids.
"""

import re

import pytest

from cleanup_oracle import message, send
from master_run import free_port, wait_until
from pyfix.queue import record as R
from qmgr_rig import DEBIAN_QMGR, Rig, normalize, rig_available, wait_gone
from smtp_script_server import ScriptServer

pytestmark = pytest.mark.skipif(not rig_available(),
                                reason="needs root, Debian's Postfix daemons and smtp-sink")

AGENT_LINE = re.compile(r"postfix/(smtp|lmtp|relay)\[")


def agent_lines(rig, queue_ids):
    lines = [line for line in rig.log().splitlines() if AGENT_LINE.search(line)]
    return normalize(lines, queue_ids)


def run(side, scenario, main_cf_extra="", sink_options=(), sink=True):
    """One side: smtp="pyfix" or "postfix", with Debian's qmgr on both."""
    rig = Rig(qmgr=DEBIAN_QMGR, main_cf_extra=main_cf_extra, agents="postfix", smtp=side)
    try:
        if sink:
            rig.start_sink(sink_options)
        rig.start()
        queue_ids = scenario(rig)
        rig.quiet()
        messages = rig.sink.messages() if rig.sink else []
        return agent_lines(rig, queue_ids), sorted(_mask_message(m) for m in messages)
    finally:
        rig.cleanup()


def _mask_message(text):
    text = re.sub(r"(?m)^(\tby |\tid |\tfor |\s+\w{3}, |Message-Id: |Date: |Arrival-Date: |Last-Attempt-Date: )\S.*$",
                  r"\1X", text)
    text = re.sub(r"\b[0-9A-F]{10,12}\b", "ID", text)
    text = re.sub(r"\]:\d+\b", "]:PORT", text)
    return text


def both(scenario, main_cf_extra="", sink_options=(), sink=True):
    ours = run("pyfix", scenario, main_cf_extra, sink_options, sink)
    theirs = run("postfix", scenario, main_cf_extra, sink_options, sink)
    return ours, theirs


def one_message(rcpts=("bob@example.org",), **kw):
    def scenario(rig):
        queue_id = rig.submit(rcpts=rcpts, **kw)
        rig.wait_log(r"%s: removed|status=deferred" % queue_id)
        # qmgr is done with it: removed, or moved to deferred/ once every recipient
        # has its outcome (waiting for a deferred message to go cost 5 s per side).
        wait_until(lambda: wait_gone(rig, queue_id, 0)
                   or queue_id in rig.queue_ids("deferred"), 5)
        return [queue_id]
    return scenario


def test_delivery_to_sink_like_postfix():
    ours, theirs = both(one_message(rcpts=("bob@example.org", "carol@example.org")))
    assert ours == theirs
    assert any("status=sent (250 2.0.0 Ok)" in line for line in ours[0])
    assert len(ours[1]) == 1


@pytest.mark.parametrize("options", [
    ["-f", "RCPT"], ["-r", "RCPT"], ["-f", "MAIL"], ["-r", "MAIL"], ["-f", "DATA"],
    ["-r", "DATA"], ["-f", "."], ["-r", "."], ["-f", "CONNECT"], ["-r", "CONNECT"],
    ["-q", "RCPT"], ["-q", "MAIL"], ["-q", "DATA"], ["-q", "."], ["-Q", "MAIL"],
    ["-Q", "RCPT"], ["-q", "EHLO"], ["-f", "EHLO"], ["-e"], ["-p"], ["-8"], ["-N"],
    ["-A", "0"], ["-L"],
], ids=lambda options: "".join(options))
def test_sink_replies_like_postfix(options):
    """Each reply of smtp-sink's repertoire, at each stage: the same status lines."""
    ours, theirs = both(one_message(rcpts=("bob@example.org", "carol@example.org")),
                        sink_options=options)
    assert ours == theirs


# ---- a scripted server: per-recipient replies, LMTP, what the client sent ------------

def run_script(side, scenario, rules=None, lmtp=False, main_cf_extra="", script=True):
    server = ScriptServer(rules, lmtp=lmtp) if script else None
    port = server.port if server else free_port()
    extra = main_cf_extra.format(port=port)
    if lmtp:
        extra += "transport_maps = inline:{example.org=lmtp:inet:127.0.0.1:%d}\n" % port
    rig = Rig(qmgr=DEBIAN_QMGR, main_cf_extra=extra, agents="postfix", smtp=side,
              port=port)
    try:
        rig.start()
        queue_ids = scenario(rig)
        rig.quiet()
        # Postfix's smtp/lmtp may keep a connection for reuse (connection caching
        # through scache) instead of sending QUIT; pyfix's has no connection cache
        # and always quits. A final QUIT is therefore not compared.
        transcripts = [_mask_message("\n".join(t[:-1] if t[-1:] == ["QUIT"] else t))
                       for t in server.transcripts] if server else []
        return agent_lines(rig, queue_ids), transcripts
    finally:
        rig.cleanup()
        if server:
            server.stop()


def both_script(scenario, rules=None, lmtp=False, main_cf_extra="", script=True):
    ours = run_script("pyfix", scenario, rules, lmtp, main_cf_extra, script)
    theirs = run_script("postfix", scenario, rules, lmtp, main_cf_extra, script)
    return ours, theirs


THREE = ("bob@example.org", "bad@example.org", "soft@example.org")
PER_RCPT = {"RCPT TO:<bad@": "550-5.1.1 <bad@example.org>: Recipient address rejected:\n"
                             "550 5.1.1 User unknown in virtual mailbox table",
            "RCPT TO:<soft@": "450 4.2.0 <soft@example.org>: try later"}


def test_per_recipient_replies_like_postfix():
    ours, theirs = both_script(one_message(THREE), PER_RCPT)
    assert ours == theirs
    assert any("status=bounced (host 127.0.0.1[127.0.0.1] said: 550-5.1.1 <bad@" in line
               for line in ours[0])


def test_lmtp_per_recipient_replies_like_postfix():
    rules = {".": ["250 2.0.0 <bob@example.org> delivered",
                   "452 4.2.2 <carol@example.org> over quota",
                   "550 5.1.1 <dave@example.org> unknown"]}
    ours, theirs = both_script(one_message(("bob@example.org", "carol@example.org",
                                            "dave@example.org")), rules, lmtp=True)
    assert ours == theirs
    assert any("LHLO " in line for line in ours[1][0].splitlines())


@pytest.mark.parametrize("name,rules", [
    ("greeting554", {"CONNECT": "554 5.7.1 go away"}),
    ("greeting421", {"CONNECT": "421 4.3.2 busy"}),
    ("ehlo502", {"EHLO": "502 5.5.2 Error: command not recognized"}),
    ("ehlo421", {"EHLO": "421 4.3.2 closing"}),
    ("helo_rejected", {"EHLO": "502 5.5.2 no", "HELO": "501 5.5.4 bad"}),
    ("no_pipelining", {"EHLO": "250-script.example\n250 8BITMIME"}),
    ("no_esmtp_codes", {"RCPT": "550 no such user", ".": "250 ok"}),
    ("small_size", {"EHLO": "250-script.example\n250 SIZE 10"}),
    ("bad_size", {"EHLO": "250-script.example\n250 SIZE ten"}),
    ("data_554", {"DATA": "554 5.5.1 no valid recipients"}),
    ("mail_452", {"MAIL": "452 4.3.1 insufficient storage"}),
    ("all_rcpt_bad", {"RCPT": "550 5.1.1 unknown"}),
    ("protocol_error", {"RCPT": "250 ok", ".": "354 what"}),
    ("drop_at_data", {"DATA": "DROP"}),
    ("drop_at_dot", {".": "DROP"}),
    ("own_hostname", {"EHLO": "250-mx.example.com\n250 PIPELINING"}),
], ids=lambda value: value if isinstance(value, str) else "")
def test_scripted_replies_like_postfix(name, rules):
    ours, theirs = both_script(one_message(THREE), rules)
    assert ours == theirs


def test_dsn_and_dot_stuffing_like_postfix():
    """NOTIFY, ORCPT, ENVID, RET, BODY, SIZE in the commands; dot-stuffed content."""
    envelope = [(R.DSN_ENVID, b"env+id=1"), (R.DSN_RET, b"2")]
    def scenario(rig):
        records = message("alice@example.com", (), body=(".hidden", "..two", "x"),
                          envelope=envelope)
        at = next(n for n, rec in enumerate(records) if rec[0] == R.MESG)
        rcpts = [(R.DSN_ORCPT, b"rfc822;Bob+x@example.org"), (R.DSN_NOTIFY, b"6"),
                 (R.RCPT, b"bob@example.org"), (R.ORCP, b"carol@example.net"),
                 (R.RCPT, b"carol@example.org")]
        records[at:at] = rcpts
        result = send(rig.master.cleanup_socket(), 0x3, records)
        assert result.status == 0, result
        rig.wait_log(r"%s: removed|status=deferred" % result.queue_id)
        return [result.queue_id]
    ours, theirs = both_script(scenario)
    assert ours == theirs
    lines = ours[1][0].splitlines()
    assert "MAIL FROM:<alice@example.com> SIZE=" in lines[1]
    assert any(line.startswith("..hidden") for line in lines)


def test_connection_refused_like_postfix():
    ours, theirs = both_script(one_message(), script=False)
    assert ours == theirs
    assert any("Connection refused" in line for line in ours[0])


def test_timeout_like_postfix():
    ours, theirs = both_script(one_message(), {"RCPT": "HANG"},
                               main_cf_extra="smtp_rcpt_timeout = 1s\n")
    assert ours == theirs
    assert any("timed out while sending RCPT TO" in line for line in ours[0])


@pytest.mark.parametrize("target", ["rcpt", "data"])
def test_address_probe_like_postfix(target):
    """sendmail -bv (trace_flags 512): the verdict comes from the RCPT (or DATA) reply;
    no content is sent."""
    def scenario(rig):
        queue_id = rig.submit(rcpts=THREE, envelope=[(R.ATTR, b"trace_flags=512")])
        rig.wait_log(r"%s: removed|status=deferred" % queue_id)
        return [queue_id]
    ours, theirs = both_script(scenario, PER_RCPT,
                               main_cf_extra="smtp_address_verify_target = %s\n" % target)
    assert ours == theirs
    assert any("status=deliverable" in line for line in ours[0])
    assert not ours[1][0].endswith("\n.")


def test_soft_bounce_like_postfix():
    ours, theirs = both_script(one_message(THREE), PER_RCPT,
                               main_cf_extra="soft_bounce = yes\n")
    assert ours == theirs
    assert any("status=SOFTBOUNCE" in line for line in ours[0])


def test_fallback_relay_like_postfix():
    """The relayhost is down: smtp_fallback_relay takes the mail."""
    dead = free_port()
    ours, theirs = both_script(
        one_message(), main_cf_extra="relayhost = [127.0.0.1]:%d\n"
        "smtp_fallback_relay = [127.0.0.1]:{port}\n" % dead)
    assert ours == theirs
    assert ours[0][0].startswith("connect to 127.0.0.1[127.0.0.1]:PORT: Connection refused")
    assert "status=sent" in ours[0][1]


@pytest.mark.parametrize("xforward", ["NAME ADDR PROTO HELO SOURCE PORT IDENT", "ADDR"])
def test_xforward_like_postfix(xforward):
    """smtp_send_xforward_command = yes: the XFORWARD commands the server announced,
    one refused (a warning, and the mail still goes)."""
    rules = {"EHLO": "250-script.example\n250-PIPELINING\n250 XFORWARD %s" % xforward,
             "XFORWARD PROTO": "550 5.5.1 no protocol for you"}
    client = [(R.ATTR, b"log_client_name=client.example.net"),
              (R.ATTR, b"log_client_address=192.0.2.7"), (R.ATTR, b"log_client_port=4711"),
              (R.ATTR, b"log_protocol_name=ESMTP"), (R.ATTR, b"log_helo_name=client+x")]
    ours, theirs = both_script(one_message(envelope=client), rules,
                               main_cf_extra="smtp_send_xforward_command = yes\n")
    assert ours == theirs
    assert re.search(r"(?m)^XFORWARD .*ADDR=192.0.2.7", ours[1][0])


def test_mime_downgrade_like_postfix():
    """A server without 8BITMIME gets 8-bit content as quoted-printable, and no SIZE."""
    headers = ("MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
               "Content-Transfer-Encoding: 8bit", "Subject: caf\u00e9")
    body = ("na\u00efve caf\u00e9 " * 8, "..dots", "plain")
    rules = {"EHLO": "250-script.example\n250-PIPELINING\n250 SIZE 1000000"}
    ours, theirs = both_script(one_message(headers=headers, body=body), rules)
    assert ours == theirs
    assert "Content-Transfer-Encoding: quoted-printable" in ours[1][0]
