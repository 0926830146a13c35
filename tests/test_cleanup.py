"""cleanup(8) against Debian's cleanup: the same record streams, through the cleanup
protocol, into a pyfix master and into Debian's Postfix 3.7 master with the same
main.cf settings; the answers (status, reason), the queue files as Debian's postcat
prints them (queue IDs and creation times masked) and the log lines must be the same.

The cases cover the header processing (missing Message-Id/Date/From, Resent- headers,
message_drop_headers, hopcount_limit, long headers), every header_checks, body_checks,
mime_header_checks and nested_header_checks action, canonical maps with their classes,
virtual alias expansion with its limits, masquerading, always_bcc and the BCC maps,
message_size_limit, the duplicate filter, DSN records, the bounce and hold requests and
malformed input. Skipped where Debian's Postfix cannot be run (not root, not installed).
"""

import os
import shutil
import tempfile

import pytest

from cleanup_oracle import (PostfixMaster, QueueMaster, find_queue_file, log_lines,
                            message, normalize_log, normalize_postcat, postcat,
                            postfix_available, send, settle_log)
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record as R

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

EXTERNAL = cu.FLAG_MASK_EXTERNAL

HEADER_CHECKS = r"""
/^Subject: reject$/             REJECT
/^Subject: reject text$/        REJECT go away
/^Subject: reject dsn$/         REJECT 5.7.9 not here
/^Subject: defer$/              REJECT 4.7.0 try later
/^Subject: bad dsn$/            REJECT 2.0.0 odd code
/^Subject: warn$/               WARN watch out
/^Subject: info$/               INFO noted
/^Subject: hold$/               HOLD held for review
/^Subject: discard$/            DISCARD bye
/^Subject: redirect$/           REDIRECT elsewhere@example.net
/^Subject: bad redirect$/       REDIRECT nowhere
/^Subject: filter$/             FILTER smtp:[127.0.0.1]:10025
/^Subject: bad filter$/         FILTER nocolon
/^Subject: empty filter$/       FILTER
/^Subject: prepend$/            PREPEND X-Prepended: yes
/^Subject: bad prepend$/        PREPEND not a header
/^Subject: replace$/            REPLACE Subject: replaced
/^Subject: replace from$/       REPLACE From: someone@example.com
/^Subject: bad replace$/        REPLACE not a header
/^Subject: ignore$/             IGNORE
/^Subject: strip$/              STRIP gone
/^Subject: dunno$/              DUNNO
/^Subject: ok$/                 OK
/^Subject: bcc$/                BCC watcher@example.net
/^Subject: bad bcc$/            BCC nobody
/^Subject: pass$/               PASS
/^Subject: bogus$/              BOGUS action
/^Subject: lower$/              reject lower case action
/^Content-Description: evil/    REJECT bad attachment
/^X-Nested: yes/                WARN nested header seen
/^X-Prepended:/                 WARN prepended header checked
"""

BODY_CHECKS = r"""
/^reject body$/                 REJECT body rejected
/^replace body$/                REPLACE replaced body
/^prepend body$/                PREPEND prepended line
/^ignore body$/                 IGNORE
/^warn body$/                   WARN body warning
/^hold body$/                   HOLD
/^discard body$/                DISCARD
"""

VIRTUAL = """\
alias@example.com       one@example.net, two@example.net
self@example.com        self@example.com, other@example.net
loop1@example.com       loop2@example.com
loop2@example.com       loop3@example.com
loop3@example.com       loop4@example.com
loop4@example.com       loop5@example.com
big@example.com         a1@example.net, a2@example.net, a3@example.net, a4@example.net, a5@example.net, a6@example.net
@catch.example          catchall@example.net
ext@example.com         extended@example.net
local                   localpart@example.net
long@example.com        %s@example.net
nothing@example.com     ,
""" % ("x" * 1100)

CANONICAL = """\
canon@example.com       official@example.com
@oldco.example          @newco.example
"""

SENDER_CANONICAL = """\
sender@example.com      the.sender@example.com
"""

RECIPIENT_CANONICAL = """\
rcpt@example.org        the.rcpt@example.org
"""

SENDER_BCC = "bccsender@example.com  sender-copy@example.net\n"
RECIPIENT_BCC = "bccrcpt@example.org  rcpt-copy@example.net\n"


def features_main_cf(tables):
    return """\
header_checks = regexp:{t}/header_checks
body_checks = regexp:{t}/body_checks
virtual_alias_maps = texthash:{t}/virtual
canonical_maps = texthash:{t}/canonical
sender_canonical_maps = texthash:{t}/sender_canonical
recipient_canonical_maps = texthash:{t}/recipient_canonical
sender_bcc_maps = texthash:{t}/sender_bcc
recipient_bcc_maps = texthash:{t}/recipient_bcc
masquerade_domains = !keep.masq.example, masq.example
masquerade_exceptions = root
virtual_alias_expansion_limit = 5
virtual_alias_recursion_limit = 3
hopcount_limit = 5
message_size_limit = 20000
recipient_delimiter = +
""".format(t=tables)


VARIANTS_MAIN_CF = """\
always_bcc = archive@example.net
always_add_missing_headers = yes
undisclosed_recipients_header = To: undisclosed-recipients:;
header_from_format = obsolete
message_drop_headers = bcc, x-drop-me
enable_long_queue_ids = yes
message_reject_characters = \\001
message_strip_characters = \\f
delay_warning_time = 4h
strict_7bit_headers = yes
remote_header_rewrite_domain = remote.example
masquerade_domains = masq.example
masquerade_classes = envelope_recipient
append_dot_mydomain = yes
"""


class Pair:
    """Debian's Postfix and pyfix, side by side, with the same settings."""

    def __init__(self, main_cf=""):
        self.postfix = PostfixMaster(main_cf).start()
        try:
            self.pyfix = QueueMaster(main_cf).start()
        except BaseException:
            self.postfix.cleanup()
            raise

    def close(self):
        self.pyfix.cleanup()
        self.postfix.cleanup()

    def one(self, run, records, flags, half_close):
        start = len(run.log())
        result = send(run.cleanup_socket(), flags, records, half_close=half_close)
        text = settle_log(run)
        queue, path = find_queue_file(run, result.queue_id)
        if path:
            cat = postcat(run, result.queue_id)
            assert cat.returncode == 0, cat.stderr
            content = normalize_postcat(cat.stdout, result.queue_id)
        else:
            content = "(no queue file)\n"
        logged = normalize_log(log_lines(text, start), [result.queue_id])
        return result, queue, "status=%d reason=%r queue=%s\n%s%s" % (
            result.status, result.reason, queue, content, "".join(l + "\n" for l in logged))

    def check(self, records, flags=EXTERNAL, half_close=False):
        """Send records to both; assert the same outcome; return pyfix's Result, queue
        name and the normalized text."""
        _, _, expected = self.one(self.postfix, records, flags, half_close)
        result, queue, got = self.one(self.pyfix, records, flags, half_close)
        assert got == expected
        return result, queue, got


@pytest.fixture(scope="module")
def tables():
    path = tempfile.mkdtemp(prefix="pyfix-tables-", dir="/tmp")
    os.chmod(path, 0o755)
    for name, text in (("header_checks", HEADER_CHECKS), ("body_checks", BODY_CHECKS),
                       ("virtual", VIRTUAL), ("canonical", CANONICAL),
                       ("sender_canonical", SENDER_CANONICAL),
                       ("recipient_canonical", RECIPIENT_CANONICAL),
                       ("sender_bcc", SENDER_BCC), ("recipient_bcc", RECIPIENT_BCC)):
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def plain():
    pair = Pair()
    yield pair
    pair.close()


@pytest.fixture(scope="module")
def features(tables):
    pair = Pair(features_main_cf(tables))
    yield pair
    pair.close()


@pytest.fixture(scope="module")
def variants():
    pair = Pair(VARIANTS_MAIN_CF)
    yield pair
    pair.close()


# -- header processing and envelope, default settings -----------------------------------

PLAIN_CASES = {
    "message-id kept": dict(headers=["Subject: hi", "Message-ID: <abc@example.com>"]),
    "missing headers added": dict(fullname="Alice Liddell",
                                  headers=["Subject: hi", "To: bob, carol@example.org"]),
    "full name with specials": dict(fullname='John Q. "Pub" Public'),
    "full name blank": dict(fullname=" "),
    "resent headers": dict(headers=["Subject: hi", "Resent-From: x", "Message-ID: <a@b>",
                                    "Resent-To: y"]),
    "resent message-id kept": dict(headers=["Resent-Message-Id: <r@example.com>",
                                            "Resent-Date: today"]),
    "drop headers": dict(headers=["Bcc: secret@example.com", "Return-Path: <x@y>",
                                  "Content-Length: 12", "Subject: kept"]),
    "address headers rewritten and folded": dict(headers=[
        "To: " + ", ".join("user%d" % n for n in range(12)),
        "Cc: Some One <someone>, (comment) other@host, group: a, b;",
        "Reply-To: x!y", "Sender: percent%host.example"]),
    "header continuation": dict(headers=["Subject: one", "\ttwo", " three"]),
    "header name with space before colon": dict(headers=["Subject : spaced"]),
    "long header lines": dict(headers=["Subject: " + "x" * 5000,
                                       "X-Long: " + " ".join(["word"] * 3000)],
                              body=["y" * 5000]),
    "header over size limit": dict(headers=["X-Huge: " + "z" * 110000, "X-Folded: a",
                                            "\t" + "w" * 110000],
                                   body=None),
    "no body": dict(headers=["Subject: only headers"], body=None),
    "body starts with space": dict(headers=[], body=[" indented"]),
    "null sender": dict(sender=""),
    "mailer-daemon sender becomes null": dict(sender="MAILER-DAEMON"),
    "mailer-daemon of another domain kept": dict(sender="MAILER-DAEMON@other.example"),
    "unqualified addresses": dict(sender="joe", rcpts=("bob", "carol@host")),
    "source route and percent hack": dict(rcpts=("@a,@b:user@c.example", "u%v.example",
                                                 "host!user")),
    "quoted local part": dict(sender='"joe user"@example.com', rcpts=('"a b"@example.org',)),
    "duplicate recipients": dict(rcpts=("bob@example.org", "BOB@example.org",
                                        "bob@example.org")),
    "several recipients": dict(rcpts=("a@example.org", "b@example.org", "c@example.org")),
    "remote context": dict(context="remote", headers=["To: joe"]),
    "no context attribute": dict(context=None),
    "mime multipart": dict(headers=["MIME-Version: 1.0",
                                    "Content-Type: multipart/mixed; boundary=BB"],
                           body=["pre", "--BB", "Content-Type: text/plain",
                                 "Content-Transfer-Encoding: 8bit", "", "part", "--BB--"]),
    "8bit encoding header": dict(headers=["Content-Transfer-Encoding: 8BIT"]),
    "binary encoding header": dict(headers=["Content-Transfer-Encoding: binary"]),
    "8-bit header": dict(headers=["Subject: caf\u00e9"], body=["na\u00efve"]),
    "stray cr and lf": dict(headers=[b"Subject: a\rb"], body=[b"x\ry\nz"]),
    "envelope attributes": dict(envelope=[(R.ATTR, b"log_client_name=client.example"),
                                          (R.ATTR, b"log_client_address=192.0.2.1"),
                                          (R.ATTR, b"log_message_origin=client[192.0.2.1]"),
                                          (R.ATTR, b"log_helo_name=helo.example"),
                                          (R.ATTR, b"log_protocol_name=ESMTP"),
                                          (R.ATTR, b"empty=")]),
    "dsn records": dict(envelope=[(R.ATTR, b"envelope_id=ENV123"),
                                  (R.ATTR, b"ret_flags=2"),
                                  (R.ATTR, b"notify_flags=12"),
                                  (R.ATTR, b"dsn_orig_rcpt=rfc822;Orig@example.org"),
                                  (R.ORCP, b"orig@example.org")]),
    "bad dsn notify": dict(envelope=[(R.ATTR, b"notify_flags=x")]),
    "original recipient records": dict(envelope=[(R.ORCP, b"first@example.org"),
                                                 (R.ORCP, b"second@example.org")]),
    "verp": dict(envelope=[(R.VERP, b"+=")]),
    "bad verp": dict(envelope=[(R.VERP, b"xy")]),
    "warn record kept": dict(envelope=[(R.WARN, b"%15d" % 1795629218)]),
    "done and cancelled recipients": dict(envelope=[(R.DONE, b"done@example.org"),
                                                    (R.DRCP, b"gone@example.org")]),
    "extracted recipients": dict(extracted=[(R.RCPT, b"extra@example.org"),
                                            (R.ATTR, b"encoding=7bit")]),
    "hold flag record": dict(envelope=[(R.FLGS, b"%d" % cu.FLAG_HOLD)]),
    "discard flag record": dict(envelope=[(R.FLGS, b"%d" % cu.FLAG_DISCARD)]),
    "bad flag record": dict(envelope=[(R.FLGS, b"%d" % cu.FLAG_MAP_OK)]),
    "multiple time records": dict(envelope=[(R.TIME, b"1700000000 0")]),
    "client create time ignored": dict(envelope=[(R.ATTR, b"create_time=1")]),
    "filter and redirect records": dict(envelope=[(R.FILT, b"smtp:[127.0.0.1]:10026"),
                                                  (R.RDR, b"redirect@example.net")]),
    # Malformed input
    "no sender": dict(sender=None),
    "no recipients": dict(rcpts=()),
    "no received header": dict(received=False),
    "pointer record": dict(envelope=[(R.PTR, b"%15d" % 0)]),
    "padding record": dict(envelope=[(R.DTXT, b"    0")]),
    "content record in envelope": dict(envelope=[(R.NORM, b"oops")]),
    "two senders": dict(envelope=[(R.FROM, b"again@example.com")]),
    "malformed attribute": dict(envelope=[(R.ATTR, b"no equals sign")]),
    "bad rewrite context": dict(context="elsewhere"),
    "bad trace flags": dict(envelope=[(R.ATTR, b"trace_flags=abc")]),
    "bad dsn ret": dict(envelope=[(R.ATTR, b"ret_flags=7")]),
    "bad envelope id": dict(envelope=[(R.ATTR, b"envelope_id=a\x01b")]),
    "unknown record in extracted": dict(extracted=[(R.SIZE, b"1")]),
    "recipient before sender": dict(sender=None, envelope=[(R.FROM, b"late@example.com")]),
    "record type 0 in envelope": dict(envelope=[(b"\0", b"nul")]),
    "record type 0 in extracted": dict(extracted=[(b"\0", b"")]),
}


@pytest.mark.parametrize("name", sorted(PLAIN_CASES))
def test_plain(plain, name):
    plain.check(message(**PLAIN_CASES[name]))


def test_record_type_0_in_content(plain):
    """A record of type 0 is a record, not an error: cleanup rejects it as unexpected
    in the content, and the records after it are not read (Postfix drains only while
    the type is above 0)."""
    records = message(headers=["Subject: x"])
    records.insert(records.index((R.XTRA, b"")), (b"\0", b"nul"))
    result, queue, text = plain.check(records)
    assert result.status == cu.STAT_BAD and queue is None
    assert "unexpected record type 0 in message content" in text


def test_plain_outcomes(plain):
    """A few of the cases above, with what they must do (the comparison alone would
    pass if both sides failed the same way)."""
    result, queue, text = plain.check(message(fullname="Alice Liddell",
                                              headers=["Subject: hi"]))
    assert result.status == 0 and queue == "incoming"
    assert "Message-Id: <STAMP.QUEUEID@mx.example.com>" in text
    assert "From: Alice Liddell <alice@example.com>" in text
    assert "cleanup: QUEUEID: message-id=<STAMP.QUEUEID@mx.example.com>" in text
    result, queue, text = plain.check(message(sender=None))
    assert result.status == cu.STAT_BAD and queue is None
    assert "missing sender envelope record" in text
    result, _, _ = plain.check(message(rcpts=()))
    assert result.status == cu.STAT_RCPT
    result, queue, _ = plain.check(message(envelope=[(R.FLGS, b"%d" % cu.FLAG_HOLD)]))
    assert result.status == 0 and queue == "hold"


def test_truncated_stream(plain):
    """The client goes away before `E`: internal protocol error, no queue file."""
    result, queue, _ = plain.check(message(end=False), half_close=True)
    assert result.status == cu.STAT_BAD and queue is None


def test_truncated_record(plain):
    records = message()[:-2] + [R.encode(R.NORM, b"complete") + b"N\x20short"]
    result, queue, _ = plain.check(records, half_close=True)
    assert result.status == cu.STAT_BAD and queue is None


def test_bad_flags(plain):
    """Flags that are not a number: the message is lost (internal protocol error)."""
    for run in (plain.postfix, plain.pyfix):
        from pyfix.common import attr
        from pyfix.queue.cleanup_client import CleanupClient
        client = CleanupClient.connect(run.cleanup_socket(), 10, wait=False)
        with client:
            client.sock.sendall(attr.print0([("flags", "many")]))
            for item in message():
                client.put(*item)
            assert client.finish()[0] == cu.STAT_BAD


def test_flags_without_mapping_or_checks(plain, features):
    """Internal clients (bounce, local's forwarding) send MAP_OK only, or nothing."""
    for flags in (cu.FLAG_MASK_INTERNAL, cu.FLAG_NONE):
        features.check(message(sender="canon@example.com", rcpts=("alias@example.com",),
                               headers=["Subject: reject"]), flags)


# -- header and body checks, canonical, virtual, masquerading, BCC -----------------------

ACTIONS = ("reject", "reject text", "reject dsn", "defer", "bad dsn", "warn", "info", "hold",
           "discard", "redirect", "bad redirect", "filter", "bad filter", "empty filter",
           "prepend", "bad prepend", "replace", "replace from", "bad replace", "ignore",
           "strip", "dunno", "ok", "bcc", "bad bcc", "pass", "bogus", "lower")


@pytest.mark.parametrize("action", ACTIONS)
def test_header_check_action(features, action):
    features.check(message(headers=["Subject: %s" % action, "X-Prepended: original"],
                           body=["reject body"] if action == "pass" else ["body"]))


@pytest.mark.parametrize("line", ["reject body", "replace body", "prepend body",
                                  "ignore body", "warn body", "hold body", "discard body"])
def test_body_check_action(features, line):
    features.check(message(headers=["Subject: body test"], body=["before", line, "after"]))


def test_check_outcomes(features):
    result, queue, text = features.check(message(headers=["Subject: reject text"]))
    assert result.status == cu.STAT_CONT and result.reason == "5.7.1 go away"
    assert "cleanup: QUEUEID: reject: header Subject: reject text from local; " \
           "from=<alice@example.com> to=<bob@example.org>: 5.7.1 go away" in text
    result, _, _ = features.check(message(headers=["Subject: defer"]))
    assert result.status == cu.STAT_DEFER and result.reason == "4.7.0 try later"
    result, queue, text = features.check(message(headers=["Subject: hold"]))
    assert result.status == 0 and queue == "hold"
    result, queue, _ = features.check(message(headers=["Subject: discard"]))
    assert result.status == 0 and queue is None
    _, _, text = features.check(message(headers=["Subject: replace"]))
    assert "Subject: replaced" in text
    _, _, text = features.check(message(headers=["Subject: filter"]))
    assert "content_filter: smtp:[127.0.0.1]:10025" in text
    _, _, text = features.check(message(headers=["Subject: redirect"]))
    assert "redirect_to: elsewhere@example.net" in text
    _, _, text = features.check(message(headers=["Subject: bcc"]))
    assert "recipient: watcher@example.net" in text
    _, _, text = features.check(message(body=["replace body"]))
    assert "replaced body" in text


def test_mime_and_nested_header_checks(features):
    features.check(message(headers=["Subject: parts", "MIME-Version: 1.0",
                                    "Content-Type: multipart/mixed; boundary=XX"],
                           body=["--XX", "Content-Type: text/plain",
                                 "Content-Description: evil thing", "", "text", "--XX--"]))
    features.check(message(headers=["Subject: nested", "MIME-Version: 1.0",
                                    "Content-Type: message/rfc822"],
                           body=["X-Nested: yes", "Subject: inner", "", "inner body"]))
    features.check(message(headers=["Content-Description: evil in the main headers"]))


def test_canonical_maps(features):
    _, _, text = features.check(message(
        sender="canon@example.com", rcpts=("rcpt@example.org", "joe@oldco.example",
                                           "canon@example.com"),
        headers=["From: Canon <canon@example.com>", "To: rcpt@example.org, x@oldco.example",
                 "Reply-To: sender@example.com"]))
    assert "sender: official@example.com" in text
    assert "recipient: the.rcpt@example.org" in text
    assert "recipient: joe@newco.example" in text
    features.check(message(sender="sender@example.com",
                           headers=["Sender: sender@example.com", "To: sender@example.com"]))


def test_virtual_alias_expansion(features):
    _, _, text = features.check(message(rcpts=("alias@example.com", "self@example.com",
                                               "anyone@catch.example",
                                               "ext+folder@example.com", "local")))
    for rcpt in ("one@example.net", "two@example.net", "self@example.com",
                 "other@example.net", "catchall@example.net",
                 "extended+folder@example.net"):
        assert "recipient: %s" % rcpt in text


@pytest.mark.parametrize("rcpt", ["loop1@example.com", "big@example.com", "long@example.com",
                                  "nothing@example.com"])
def test_virtual_alias_limits(features, rcpt):
    result, queue, _ = features.check(message(rcpts=(rcpt,)))
    assert result.status != 0 and queue is None


def test_masquerading(features):
    _, _, text = features.check(message(
        sender="joe@host.masq.example",
        rcpts=("ann@host.masq.example", "root@host.masq.example"),
        headers=["From: joe@host.masq.example", "To: ann@a.b.masq.example",
                 "Cc: root@host.masq.example, x@keep.masq.example, y@sub.keep.masq.example"]))
    assert "sender: joe@masq.example" in text
    assert "recipient: ann@host.masq.example" in text


def test_bcc_maps(features):
    _, _, text = features.check(message(sender="bccsender@example.com",
                                        rcpts=("bccrcpt@example.org",)))
    assert "recipient: sender-copy@example.net" in text
    assert "recipient: rcpt-copy@example.net" in text


def test_hopcount_limit(features):
    result, _, text = features.check(message(headers=["Received: from a"] * 4))
    assert result.status == cu.STAT_HOPS
    features.check(message(headers=["Received: from a"] * 3))


def test_message_size_limit(features):
    result, queue, _ = features.check(message(body=["x" * 100] * 250))
    assert result.status == cu.STAT_SIZE and queue is None
    detail = cu.stat_detail(result.status)
    assert (detail.smtp, detail.dsn, detail.text) == (552, "5.3.4", "message file too big")


def test_dsn_success_with_alias_needs_trace_service(features):
    """NOTIFY=SUCCESS for an alias writes to the trace service, which is not running."""
    result, _, _ = features.check(message(rcpts=(), envelope=[
        (R.ATTR, b"notify_flags=2"), (R.RCPT, b"alias@example.com")]))
    assert result.status == cu.STAT_WRITE


def test_bounce_request_without_bounce_service(features):
    """pickup asks cleanup to bounce rejected mail; without a bounce service the
    message stays with the client (queue file write error)."""
    result, _, _ = features.check(message(headers=["Subject: reject"]),
                                  cu.FLAG_BOUNCE | EXTERNAL)
    assert result.status == cu.STAT_WRITE
    features.check(message(sender=None), cu.FLAG_BOUNCE | EXTERNAL)
    features.check(message(body=["x" * 100] * 250), cu.FLAG_BOUNCE | EXTERNAL)


# -- other settings ------------------------------------------------------------------------

VARIANT_CASES = {
    "always bcc and missing headers": dict(context="remote"),
    "obsolete from format": dict(fullname="Alice (the) Liddell"),
    "undisclosed recipients": dict(headers=["Subject: none"]),
    "visible recipients": dict(headers=["Cc: x@y"]),
    "drop headers": dict(headers=["X-Drop-Me: 1", "Bcc: b@c", "X-Keep: 2"]),
    "reject character": dict(body=[b"bad \x01 char"]),
    "strip character": dict(body=[b"form\x0cfeed"]),
    "8-bit header strict": dict(headers=["Subject: caf\u00e9"]),
    "remote rewrite domain": dict(context="remote", headers=["To: joe", "From: ann"]),
    "masquerade envelope recipient": dict(rcpts=("x@host.masq.example",),
                                          headers=["To: x@host.masq.example"]),
    "append dot mydomain": dict(sender="joe@host", rcpts=("ann@host",)),
    "delay warning": dict(),
    "null sender no warning": dict(sender=""),
}


@pytest.mark.parametrize("name", sorted(VARIANT_CASES))
def test_variants(variants, name):
    variants.check(message(**VARIANT_CASES[name]))
