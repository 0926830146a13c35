"""bounce(8), differentially: pyfix's bounce daemon and Debian's, each as the bounce,
defer and trace services of a queue (tests/bounce_twins.py), get the same original
message and the same requests; the logfiles they write, the notifications they post
(Debian's `postcat -bh` of each, and its envelope), their answers and their log lines
must be the same, masked for queue IDs, dates and boundary stamps."""

import difflib
import re

import pytest

from bounce_twins import (CMD_FLUSH, CMD_ONE, CMD_TRACE, CMD_VERP,
                          CMD_WARN, Side, dsn_attrs, log_lines, mask, notices,
                          rcpt_attrs, settle, twins_available)

pytestmark = pytest.mark.skipif(not twins_available(),
                                reason="needs root and Debian's Postfix bounce")

BASE_CF = """\
double_bounce_sender = double-bounce
"""
PM_CF = """\
notify_classes = bounce, 2bounce, delay, resource, software
bounce_notice_recipient = pm-bounce@example.com
2bounce_notice_recipient = pm-2bounce@example.com
delay_notice_recipient = pm-delay@example.com
bounce_size_limit = 600
delay_warning_time = 4h
maximal_queue_lifetime = 3d
enable_threaded_bounces = yes
smtputf8_enable = no
"""

TEMPLATE = """\
# a custom template file
failure_template = <<EOF
Charset: utf-8
From: Mail Robot <MAILER-DAEMON@$mydomain>
Subject: Returned: your mail
Postmaster-Subject: PM: returned mail

Hello, this is $myhostname (Gr\u00fc\u00dfe).
Your mail was kept $maximal_queue_lifetime_days days at most.
EOF

delay_template = <<EOF
Subject: Still trying

Delayed for $delay_warning_time_hours hours on $myhostname.
EOF
"""

SIDES = ("pyfix", "postfix")


def _pair(extra, trace_options=""):
    sides = {}
    try:
        for name in SIDES:
            sides[name] = Side(name, BASE_CF + extra, trace_options).start()
    except BaseException:
        for side in sides.values():
            side.cleanup()
        raise
    return sides


@pytest.fixture(scope="module")
def plain():
    sides = _pair("")
    yield sides
    for side in sides.values():
        side.cleanup()


@pytest.fixture(scope="module")
def pm():
    sides = _pair(PM_CF)
    yield sides
    for side in sides.values():
        side.cleanup()


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    path = "/tmp/pyfix-bounce-template-%d.cf" % id(tmp_path_factory)
    with open(path, "w") as f:
        f.write(TEMPLATE)
    # The trace service of this pair cannot reach cleanup: failed requests.
    sides = _pair("bounce_template_file = %s\nsmtputf8_enable = yes\n" % path,
                  "-o cleanup_service_name=nocleanup")
    yield sides
    for side in sides.values():
        side.cleanup()
    import os
    os.unlink(path)


def outcome(side, scenario, logs=("bounce", "defer", "trace")):
    """Run scenario(side) -> (queue_id, statuses); what users see of it, masked."""
    start = len(side.log())
    queue_id, statuses = scenario(side)
    text = settle(side)
    new = notices(text, queue_id)
    ids = [queue_id] + new
    result = {"statuses": statuses,
              "log": [mask(line, ids) for line in log_lines(text, start)
                      if not re.search(r"\b%s: (message-id|from)=" % queue_id, line)],
              "logfiles": {name: side.logfile(name, queue_id) for name in logs}}
    for number, new_id in enumerate(new, 1):
        result["notice%d" % number] = mask(side.postcat(new_id), ids)
        envelope = side.postcat(new_id, ("-e",))
        result["envelope%d" % number] = [line for line in envelope.splitlines()
                                         if line.startswith(("sender:", "recipient:"))]
    return result


def both(sides, scenario):
    ours = outcome(sides["pyfix"], scenario)
    theirs = outcome(sides["postfix"], scenario)
    return ours, theirs


def assert_same(ours, theirs):
    for key in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(key), theirs.get(key)
        if isinstance(mine, str) and isinstance(other, str) and mine != other:
            diff = difflib.unified_diff(other.splitlines(), mine.splitlines(), "postfix",
                                        "pyfix", lineterm="")
            raise AssertionError("%s differs:\n%s" % (key, "\n".join(diff)))
        assert mine == other, key


def _appended(side, service, queue_id, entries):
    return [side.append(service, queue_id, rcpt, dsn) for rcpt, dsn in entries]


FAILED = ({"address": "bob@example.org"}, {})
FAILED2 = ({"address": "carol@example.org", "orig": "carol-alias@example.com",
            "orcpt": "rfc822;carol-alias@example.com"},
           {"status": "5.7.1", "reason": "host mx.example.org[192.0.2.1] said: 554 5.7.1 "
            "<carol@example.org>: Relay access denied, and this reason is long enough to "
            "need wrapping at seventy-nine columns (in reply to RCPT TO command)",
            "dtext": "554 5.7.1 <carol@example.org>: Relay access denied"})


def flush(sender="alice@example.com", rcpts=("bob@example.org", "carol@example.org"),
          entries=(FAILED, FAILED2), ret=0, envid="", body=("body",), headers=(),
          encoding="", smtputf8=0, flags=0, command=CMD_FLUSH, service="bounce"):
    def scenario(side):
        queue_id = side.submit(sender, rcpts, body=body, headers=headers)
        statuses = _appended(side, service, queue_id, entries)
        statuses.append(side.notify(service, command, queue_id, sender=sender, ret=ret,
                                    envid=envid, encoding=encoding, smtputf8=smtputf8,
                                    flags=flags))
        return queue_id, statuses
    return scenario


# -- the cases -----------------------------------------------------------------------------

def test_bounce_5xx_like_postfix(plain):
    ours, theirs = both(plain, flush())
    assert_same(ours, theirs)
    assert ours["statuses"] == [0, 0, 0]
    assert ours["logfiles"]["bounce"] is None            # removed once posted
    notice = ours["notice1"]
    assert "Subject: Undelivered Mail Returned to Sender" in notice
    assert "From: Mail Delivery System <MAILER-DAEMON@example.com>" in notice
    assert "Final-Recipient: rfc822; carol@example.org" in notice
    assert "Original-Recipient: rfc822;carol-alias@example.com" in notice
    assert "Content-Type: message/rfc822" in notice
    assert any("sender non-delivery notification: QID1" in line for line in ours["log"])


def test_append_writes_the_logfile_like_postfix(plain):
    def scenario(side):
        queue_id = side.submit()
        return queue_id, _appended(side, "defer", queue_id, [
            FAILED, FAILED2, ({"address": "", "notify": 8},
                              {"status": "4.4.1", "action": "delayed",
                               "reason": "connect to x: Connection refused",
                               "dtype": "", "mtype": ""})])
    ours, theirs = both(plain, scenario)
    assert_same(ours, theirs)
    assert b"reason=connect to x: Connection refused" in ours["logfiles"]["defer"]


def test_ret_hdrs_and_envid_like_postfix(plain):
    ours, theirs = both(plain, flush(ret=2, envid="ENV-42", headers=("Subject: hi",
                                                                      "Message-ID: <m1@x>")))
    assert_same(ours, theirs)
    assert "Original-Envelope-Id: ENV-42" in ours["notice1"]
    assert "Content-Type: text/rfc822-headers" in ours["notice1"]


def test_delay_warning_like_postfix(pm):
    entry = ({"address": "bob@example.org"},
             {"status": "4.4.1", "action": "delayed", "reason": "connect to "
              "mx.example.org[192.0.2.1]:25: Connection refused", "dtype": "", "dtext": ""})
    ours, theirs = both(pm, flush(entries=(entry,), command=CMD_WARN, service="defer",
                                  rcpts=("bob@example.org",)))
    assert_same(ours, theirs)
    assert ours["logfiles"]["defer"] is not None         # a warning keeps the log
    assert "Subject: Delayed Mail (still being retried)" in ours["notice1"]
    assert "Will-Retry-Until: DATE" in ours["notice1"]
    assert "Subject: Postmaster Warning: Delayed Mail" in ours["notice2"]


def test_success_notification_like_postfix(plain):
    entry = ({"address": "bob@example.org", "notify": 2},
             {"status": "2.0.0", "action": "delivered",
              "reason": "delivery via mx[1.2.3.4]:25: 250 2.0.0 Ok: queued as 1234",
              "dtext": "250 2.0.0 Ok: queued as 1234"})
    ours, theirs = both(plain, flush(entries=(entry,), command=CMD_TRACE, service="trace",
                                     rcpts=("bob@example.org",)))
    assert_same(ours, theirs)
    assert "Subject: Successful Mail Delivery Report" in ours["notice1"]
    assert ours["logfiles"]["trace"] is None


def test_verbose_trace_uses_verify_template_like_postfix(plain):
    entry = ({"address": "bob@example.org"},
             {"status": "2.0.0", "action": "delivered", "reason": "delivered"})
    ours, theirs = both(plain, flush(entries=(entry,), command=CMD_TRACE, service="trace",
                                     flags=1 << 10, rcpts=("bob@example.org",)))
    assert_same(ours, theirs)
    assert "Subject: Mail Delivery Status Report" in ours["notice1"]


def test_bounce_size_limit_and_postmaster_copy_like_postfix(pm):
    body = ["line %d of a message larger than bounce_size_limit" % n for n in range(40)]
    ours, theirs = both(pm, flush(body=body))
    assert_same(ours, theirs)
    assert "Content-Description: Undelivered Message Headers" in ours["notice1"]
    assert "line 5 of" not in ours["notice1"]
    assert "Subject: Postmaster Copy: Undelivered Mail" in ours["notice2"]
    assert ours["envelope2"][0].startswith("sender: double-bounce@")


def test_bounce_of_null_sender_goes_to_2bounce_like_postfix(pm):
    ours, theirs = both(pm, flush(sender=""))
    assert_same(ours, theirs)
    assert "recipient: pm-2bounce@example.com" in ours["envelope1"]
    assert any("postmaster non-delivery notification" in line for line in ours["log"])


def test_null_sender_bounce_without_2bounce_class_like_postfix(plain):
    ours, theirs = both(plain, flush(sender=""))
    assert_same(ours, theirs)
    assert ours["statuses"][-1] == 0 and "notice1" not in ours


def test_double_bounce_sender_is_discarded_like_postfix(plain):
    ours, theirs = both(plain, flush(sender="double-bounce@mx.example.com"))
    assert_same(ours, theirs)
    assert any("undeliverable postmaster notification discarded" in line
               for line in ours["log"])


def test_notify_never_cancels_the_notice_like_postfix(plain):
    entry = ({"address": "bob@example.org", "notify": 1}, {})
    ours, theirs = both(plain, flush(entries=(entry,), rcpts=("bob@example.org",)))
    assert_same(ours, theirs)
    assert "notice1" not in ours


@pytest.mark.parametrize("sender,notify", [("alice@example.com", 0), ("", 0),
                                           ("alice@example.com", 1),
                                           ("double-bounce@mx.example.com", 0)])
def test_one_recipient_request_like_postfix(pm, sender, notify):
    def scenario(side):
        queue_id = side.submit(sender=sender)
        status = side.request("bounce", [
            ("nrequest", CMD_ONE), ("flags", 0), ("queue_name", "incoming"),
            ("queue_id", queue_id), ("encoding", ""), ("smtputf8", 0),
            ("sender", sender), ("envelope_id", ""), ("ret_flags", 0)]
            + rcpt_attrs(notify=notify) + dsn_attrs())
        return queue_id, [status]
    ours, theirs = both(pm, scenario)
    assert_same(ours, theirs)
    assert ("notice2" in ours) == (sender == "alice@example.com" and notify == 0)


@pytest.mark.parametrize("pair", ["plain", "pm"])
def test_verp_request_like_postfix(request, pair):
    ours, theirs = both(request.getfixturevalue(pair), _verp())
    assert_same(ours, theirs)
    envelopes = [line for key in ours if key.startswith("envelope") for line in ours[key]]
    assert "recipient: alice+carol-alias=example.com@example.com" in envelopes


def _verp():
    def scenario(side):
        queue_id = side.submit(rcpts=("bob@example.org", "carol@example.org"))
        statuses = _appended(side, "bounce", queue_id, (FAILED, FAILED2))
        statuses.append(side.notify("bounce", CMD_VERP, queue_id,
                                    extra=[("verp_delimiters", "+=")]))
        return queue_id, statuses
    return scenario


def test_custom_template_and_8bit_like_postfix(custom):
    ours, theirs = both(custom, flush(encoding="8bit",
                                      body=("caf\u00e9 au lait",)))
    assert_same(ours, theirs)
    assert "Subject: Returned: your mail" in ours["notice1"]
    assert "Content-Type: text/plain; charset=utf-8" in ours["notice1"]


def test_smtputf8_message_like_postfix(custom):
    rcpt = ({"address": "j\u00f6rg@example.org"}, {})
    ours, theirs = both(custom, flush(rcpts=("j\u00f6rg@example.org",), entries=(rcpt,),
                                      smtputf8=1, encoding="8bit",
                                      sender="\u00e5sa@example.com"))
    assert_same(ours, theirs)
    assert "Content-Type: message/global-delivery-status" in ours["notice1"]
    assert "Final-Recipient: utf-8; j\u00f6rg@example.org" in ours["notice1"]


def test_custom_delay_template_like_postfix(custom):
    entry = ({"address": "bob@example.org"},
             {"status": "4.4.1", "action": "delayed", "reason": "timeout"})
    ours, theirs = both(custom, flush(entries=(entry,), command=CMD_WARN, service="defer",
                                      rcpts=("bob@example.org",)))
    assert_same(ours, theirs)
    assert "Subject: Still trying" in ours["notice1"]


def test_malformed_requests_like_postfix(plain):
    def scenario(side):
        statuses = [side.notify("bounce", CMD_FLUSH, "bad/id"),
                    side.request("bounce", [("nrequest", 99)]),
                    side.request("defer", [
                        ("nrequest", CMD_ONE), ("flags", 0), ("queue_name", "incoming"),
                        ("queue_id", "ABC"), ("encoding", ""), ("smtputf8", 0),
                        ("sender", "a@b"), ("envelope_id", ""), ("ret_flags", 0)]
                        + rcpt_attrs() + dsn_attrs())]
        return "NOQUEUE", statuses
    ours, theirs = both(plain, scenario)
    assert_same(ours, theirs)
    assert all(status != 0 for status in ours["statuses"])


def test_failed_request_with_clean_flag_removes_the_log_like_postfix(custom):
    """BOUNCE_FLAG_CLEAN: the notice cannot be posted (no cleanup service), so the
    request fails and the trace logfile it was about is removed."""
    entry = ({"address": "bob@example.org", "notify": 2},
             {"status": "2.0.0", "action": "delivered", "reason": "delivered"})

    def scenario(side):
        queue_id = side.submit()
        statuses = _appended(side, "trace", queue_id, [entry])
        statuses.append(side.notify("trace", CMD_TRACE, queue_id, flags=1))
        return queue_id, statuses
    ours, theirs = both(custom, scenario)
    assert_same(ours, theirs)
    assert ours["statuses"][-1] != 0 and ours["logfiles"]["trace"] is None
    assert any("connect to public/nocleanup" in line for line in ours["log"])


def test_threaded_bounce_references_like_postfix(pm):
    ours, theirs = both(pm, flush(headers=("Subject: hi", "Message-ID: <thread-1@x>")))
    assert_same(ours, theirs)
    assert "In-Reply-To: <thread-1@x>" in ours["notice1"]


def test_trace_of_null_sender_like_postfix(pm, plain):
    entry = ({"address": "bob@example.org", "notify": 2},
             {"status": "2.0.0", "action": "delivered", "reason": "delivered"})
    for sides in (pm, plain):
        ours, theirs = both(sides, flush(sender="", entries=(entry,), command=CMD_TRACE,
                                         service="trace", rcpts=("bob@example.org",)))
        assert_same(ours, theirs)
    assert any("not sending trace/success notification for single-bounce" in line
               for line in ours["log"])


def test_delay_warning_of_null_sender_goes_to_postmaster_like_postfix(pm):
    entry = ({"address": "bob@example.org"},
             {"status": "4.4.1", "action": "delayed", "reason": "timeout"})
    ours, theirs = both(pm, flush(sender="", entries=(entry,), command=CMD_WARN,
                                  service="defer", rcpts=("bob@example.org",)))
    assert_same(ours, theirs)
    assert "recipient: pm-delay@example.com" in ours["envelope1"]


def test_verp_request_for_null_sender_like_postfix(plain):
    ours, theirs = both(plain, flush(sender="", command=CMD_VERP))
    assert_same(ours, theirs)


def test_flush_marks_recipients_done_like_postfix(plain):
    """BOUNCE_FLAG_DELRCPT: the bounced recipients' records become `D` records."""
    def scenario(side):
        queue_id = side.submit(rcpts=("bob@example.org", "carol@example.org",
                                      "dave@example.org"))
        offsets = side.recipient_offsets(queue_id)
        entries = [({"address": "bob@example.org", "offset": offsets[0]}, {}),
                   ({"address": "carol@example.org", "offset": offsets[1]}, {})]
        statuses = _appended(side, "bounce", queue_id, entries)
        statuses.append(side.notify("bounce", CMD_FLUSH, queue_id, flags=2))
        statuses.append(side.queue_records(queue_id))
        return queue_id, statuses
    ours, theirs = both(plain, scenario)
    assert_same(ours, theirs)
    assert ours["statuses"][-1] == ["D", "D", "R"]


@pytest.mark.parametrize("encoding", ["7bit", "8bit", "", "8BITMIME"])
def test_mime_encodings_without_smtputf8_like_postfix(pm, encoding):
    body = ("caf\u00e9",) if encoding == "8bit" else ("plain",)
    ours, theirs = both(pm, flush(encoding=encoding, body=body))
    assert_same(ours, theirs)


def test_missing_queue_file_and_logfile_like_postfix(plain):
    """No original and no logfile: the notice says both are unavailable."""
    def scenario(side):
        return "ABCDEF12345", [side.notify("bounce", CMD_FLUSH, "ABCDEF12345")]
    ours, theirs = both(plain, scenario)
    assert_same(ours, theirs)
    assert "--- Delivery report unavailable ---" in ours["notice1"]
    assert "--- Undelivered message unavailable ---" in ours["notice1"]


ODD_LOG = (b"\n<old-style@example.org>: an old-style record only\n\n"
           b"\nrecipient=bob@example.org\nbogus_attribute=1\nnot a record\n"
           b"notify_flags=junk\noffset=-5\nreason=text with \x01 control\n\n"
           b"\n<mixed@example.org>: old style first\nstatus=5.2.2\n"
           b"reason=mailbox full\n\n\nrecipient=\nreason=null recipient\n")


def test_odd_logfile_like_postfix(plain):
    """Old-style, mixed, malformed and incomplete logfile entries are read alike."""
    def scenario(side):
        queue_id = side.submit()
        with open("%s/bounce/%s" % (side.spool, queue_id), "wb") as f:
            f.write(ODD_LOG)
        return queue_id, [side.notify("bounce", CMD_FLUSH, queue_id)]
    ours, theirs = both(plain, scenario)
    assert_same(ours, theirs)
    assert "<old-style@example.org>: an old-style record only" in ours["notice1"]


@pytest.mark.parametrize("body", [("x" * 5000, "short line"),
                                  tuple("line %05d %s" % (n, "y" * 60) for n in range(900))],
                         ids=["long-line", "over-50000"])
def test_large_originals_like_postfix(plain, body):
    headers = ("Subject: " + "folded " * 20, "\tcontinued header", "X-Long: " + "z" * 3000)
    ours, theirs = both(plain, flush(body=body, headers=headers))
    assert_same(ours, theirs)
