"""The queue listings of postqueue(1): the showq stream read and shown in the
traditional `mailq` format (-p) or as one JSON object per message (-j) (Postfix's
src/postqueue/showq_compat.c and showq_json.c).
"""

import time

from pyfix.common import attr, msg

from pyfix.commands.queue_tools import EX_IOERR, EX_SOFTWARE

SHOWQ_PROTOCOL = "mail_queue_list_protocol"

# Short and long queue ID layouts of the -p listing.
S_STRING_FORMAT = b"%-11s %7s %-20s %s\n"
S_SENDER_FORMAT = b"%-11s %7d %20.20s %s\n"
S_HEADINGS = (b"-Queue ID-", b"--Size--", b"----Arrival Time----", b"-Sender/Recipient-------")
L_STRING_FORMAT = b"%-17s %8s %-19s %s\n"
L_SENDER_FORMAT = b"%-17s %8d %19.19s %s\n"
L_HEADINGS = (b"----Queue ID-----", b"--Size--", b"---Arrival Time----",
              b"--Sender/Recipient------")


def fatal_status(status, text):
    """msg_fatal_status(): the status is reported, but postqueue's cleanup routine makes
    every fatal exit EX_UNAVAILABLE."""
    msg.fatal(text, status)


def _b(text):
    return text.encode("utf-8", "surrogateescape")


# -- reading the showq protocol ----------------------------------------------------------

def scan_more(stream):
    """attr_scan_more(): 0 after consuming a list terminator, 1 when more attributes
    follow, -1 at the end of the input."""
    ch = stream.peek()
    if ch is None:
        return -1
    if ch == 0:
        stream.getc()
        return 0
    return 1


MESSAGE_ATTRS = [(attr.STR, "queue_name"), (attr.STR, "queue_id"), (attr.LONG, "time"),
                 (attr.LONG, "size"), (attr.INT, "forced_expire"), (attr.STR, "sender")]
RECIPIENT_ATTRS = [(attr.STR, "recipient"), (attr.STR, "reason")]
SCAN_FLAGS = attr.FLAG_MORE | attr.FLAG_STRICT | attr.FLAG_PRINTABLE


def _malformed():
    fatal_status(EX_SOFTWARE, "malformed showq server response")


def read_message(stream):
    count, values = stream.scan(MESSAGE_ATTRS, SCAN_FLAGS)
    if count != 6:
        _malformed()
    return values


def read_recipients(stream):
    while True:
        status = scan_more(stream)
        if status < 0:
            _malformed()
        if status == 0:
            return
        count, values = stream.scan(RECIPIENT_ATTRS, SCAN_FLAGS)
        if count != 2:
            _malformed()
        yield values["recipient"], values["reason"]


def _signed_long(value):
    return value - 2 ** 64 if value >= 2 ** 63 else value


def _asctime(seconds):
    try:
        return _b(time.asctime(time.localtime(seconds)))
    except (OverflowError, OSError, ValueError):
        return b"???"


def showq_compat(stream, out, long_ids):
    """The traditional listing (showq_compat())."""
    file_count = 0
    queue_size = 0
    while True:
        status = scan_more(stream)
        if status < 0:
            _malformed()
        if status == 0:
            break
        if file_count > 0:
            out.write(b"\n")
        else:
            out.write((L_STRING_FORMAT % L_HEADINGS) if long_ids
                      else (S_STRING_FORMAT % S_HEADINGS))
        values = read_message(stream)
        size = _signed_long(values["size"])
        id_status = _b(values["queue_id"])
        if values["queue_name"] == "active":
            id_status += b"*"
        elif values["queue_name"] == "hold":
            id_status += b"!"
        if values["forced_expire"]:
            id_status += b"#"
        out.write((L_SENDER_FORMAT if long_ids else S_SENDER_FORMAT)
                  % (id_status, size, _asctime(_signed_long(values["time"])),
                     _b(values["sender"])))
        saved_reason = b""
        for address, why in read_recipients(stream):
            why = _b(why)
            if why != saved_reason:
                saved_reason = why
                show = why or b"reason unavailable"
                padding = max(0, 76 - len(show))
                out.write(b" " * padding + b"(" + show + b")\n")
            out.write((L_STRING_FORMAT if long_ids else S_STRING_FORMAT)
                      % (b"", b"", b"", _b(address)))
        queue_size += size
        file_count += 1
        if not _flush(out):
            return
    if file_count == 0:
        out.write(b"Mail queue is empty\n")
    else:
        out.write(b"\n-- %d Kbytes in %d Request%s.\n"
                  % ((queue_size % 2 ** 64) // 1024, file_count,
                     b"" if file_count == 1 else b"s"))
    _flush(out)


def _flush(out):
    try:
        return out.flush()
    except OSError as exc:
        fatal_status(EX_IOERR, "output write error: %s" % msg.strerror(exc))


def json_quote(text):
    out = []
    for ch in text:
        code = ord(ch)
        if code < 32 or code == 127:
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t"}.get(ch, "\\u%04X" % code))
        elif ch in "\\\"":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return _b(msg.printable("".join(out)))


def showq_json(stream, out):
    """One JSON object per message (showq_json())."""
    while True:
        status = scan_more(stream)
        if status < 0:
            _malformed()
        if status == 0 or out.broken:
            return
        values = read_message(stream)
        line = [b'{"queue_name": "%s", ' % json_quote(values["queue_name"]),
                b'"queue_id": "%s", ' % json_quote(values["queue_id"]),
                b'"arrival_time": %d, ' % _signed_long(values["time"]),
                b'"message_size": %d, ' % _signed_long(values["size"]),
                b'"forced_expire": %s, ' % (b"true" if values["forced_expire"] else b"false"),
                b'"sender": "%s", ' % json_quote(values["sender"]),
                b'"recipients": [']
        for count, (address, why) in enumerate(read_recipients(stream)):
            if count > 0:
                line.append(b", ")
            line.append(b'{"address": "%s"' % json_quote(address))
            if why:
                line.append(b', "delay_reason": "%s"' % json_quote(why))
            line.append(b"}")
        line.append(b"]}\n")
        out.write(b"".join(line))
        _flush(out)


def showq_client(json, stream, out, long_ids):
    """The listing of a showq stream: JSON (-j) or the traditional one (-p)."""
    count, _ = stream.scan([(attr.STREQ, "protocol", SHOWQ_PROTOCOL)], attr.FLAG_STRICT)
    if count != 0:
        _malformed()
    if json:
        showq_json(stream, out)
    else:
        showq_compat(stream, out, long_ids)
