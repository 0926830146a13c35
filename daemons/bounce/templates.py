"""The bounce message templates (Postfix's bounce/bounce_template.c and
bounce_templates.c): the built-in failure, delay, success and verify templates, their
replacement from bounce_template_file, $name expansion of their text, and the two dumps
that `postconf -b` (expanded text) and `postconf -t` (templates) print.

A template is pseudo headers (Charset:, From:, Subject:, Postmaster-Subject:), a blank
line, and message text with $name references. bounce_template_file holds
`failure_template = <<EOF ... EOF` style entries; a template with an error is ignored
with Postfix's warnings, and the built-in one is used instead.
"""

from pyfix.common import msg
from pyfix.common.macro import FLAG_PRINTABLE, PARSE_ERROR, PARSE_UNDEF, mac_expand
from pyfix.common.mime_state import is_header
from pyfix.common.strings import split_nameval

from pyfix.daemons.bounce.known_params import known_to_bounce

MAILER_DAEMON = "MAILER-DAEMON"
POSTMASTER = "postmaster"

CLASS_FAILURE = "failure"
CLASS_DELAY = "delay"
CLASS_SUCCESS = "success"
CLASS_VERIFY = "verify"

HFROM_FORMAT_OBS = 0
HFROM_FORMAT_STD = 1

_FOOTER = ("", "For further assistance, please send mail to " + POSTMASTER + ".", "",
           "If you do so, please include this problem report. You can",
           "delete your own text from the attached returned message.", "",
           "                   The mail system")

_BUILTIN = {
    CLASS_FAILURE: ("Undelivered Mail Returned to Sender",
                    "Postmaster Copy: Undelivered Mail", (
                        "This is the mail system at host $myhostname.", "",
                        "I'm sorry to have to inform you that your message could not",
                        "be delivered to one or more recipients. It's attached below.",
                    ) + _FOOTER),
    CLASS_DELAY: ("Delayed Mail (still being retried)",
                  "Postmaster Warning: Delayed Mail", (
                      "This is the mail system at host $myhostname.", "",
                      "####################################################################",
                      "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
                      "####################################################################",
                      "",
                      "Your message could not be delivered for more than "
                      "$delay_warning_time_hours hour(s).",
                      "It will be retried until it is $maximal_queue_lifetime_days day(s) old.",
                  ) + _FOOTER),
    CLASS_SUCCESS: ("Successful Mail Delivery Report", None, (
        "This is the mail system at host $myhostname.", "",
        "Your message was successfully delivered to the destination(s)",
        "listed below. If the message was delivered to mailbox you will",
        "receive no further notifications. Otherwise you may still receive",
        "notifications of mail delivery errors from other systems.", "",
        "                   The mail system")),
    CLASS_VERIFY: ("Mail Delivery Status Report", None, (
        "This is the mail system at host $myhostname.", "",
        "Enclosed is the mail delivery report that you requested.", "",
        "                   The mail system")),
}

CLASSES = (CLASS_FAILURE, CLASS_DELAY, CLASS_SUCCESS, CLASS_VERIFY)

# $<name>_<unit> of these parameters is their value in that unit (bounce_template.c).
TIME_PARAMETERS = ("delay_warning_time", "maximal_queue_lifetime")
TIME_DIVISORS = (("seconds", 1), ("minutes", 60), ("hours", 3600), ("days", 86400),
                 ("weeks", 7 * 86400))
# Shown in UTF-8 form when smtputf8_enable is on.
UTF8_PARAMETERS = ("myhostname", "mydomain")


def _allascii(text):
    return text.isascii()


class Template:
    """One template: the built-in one, or one loaded from a file (parsed lazily)."""

    def __init__(self, klass):
        self.klass = klass
        subject, pm_subject, text = _BUILTIN[klass]
        self._builtin = (subject, pm_subject, list(text))
        self.buffer = None
        self.reset()

    def reset(self):
        self.subject, self.postmaster_subject, text = self._builtin
        self.message_text = list(text)
        self.origin = "[built-in]"
        self.charset = "us-ascii"
        self.encoding = "7bit"
        self.obs_from = MAILER_DAEMON + " (Mail Delivery System)"
        self.std_from = "Mail Delivery System <" + MAILER_DAEMON + ">"
        self.buffer = None

    def load(self, origin, buffer):
        """bounce_template_load(): remember the text; it is parsed when first used."""
        if self.buffer is not None:
            self.reset()
        self.buffer = buffer
        self.origin = origin

    def _ignore(self, text):
        msg.warn("%s: %s in %s template -- ignoring this template"
                 % (self.origin, text, self.klass))
        self.reset()

    def parse(self):
        """bounce_template_parse_buffer(), once, on first use."""
        if self.buffer is None:
            return
        lines = self.buffer.split("\n")
        self.buffer = None
        index = 0
        values = {}
        while index < len(lines):
            line = lines[index]
            hlen = is_header(line)
            if hlen <= 0:
                break
            index += 1
            name = line[:hlen].rstrip(" \t")
            value = line[hlen:].lstrip(": \t\n\v\f\r")
            if not value:
                return self._ignore('empty "%s" header value' % name)
            if not _allascii(value):
                return self._ignore('non-ASCII "%s" header value' % name)
            key = name.lower()
            if key == "postmaster-subject" and self.postmaster_subject is None:
                return self._ignore('inapplicable "%s" header label' % name)
            if key not in ("charset", "from", "subject", "postmaster-subject"):
                return self._ignore('unknown "%s" header label' % name)
            values[key] = value
        while index < len(lines) and not lines[index].strip(" \t\n\v\f\r"):
            index += 1
        if index >= len(lines):
            return self._ignore("missing message text")
        text = lines[index:]
        charset = values.get("charset", self.charset)
        encoding = self.encoding
        if not all(_allascii(line) for line in text):
            if charset.lower() == "us-ascii":
                msg.warn("%s: 8-bit message text in %s template" % (self.origin, self.klass))
                msg.warn("please specify a charset value other than us-ascii")
                msg.warn("-- ignoring this template for now")
                return self.reset()
            encoding = "8bit"
        self.charset, self.encoding, self.message_text = charset, encoding, text
        if "from" in values:
            self.std_from = self.obs_from = values["from"]
        self.subject = values.get("subject", self.subject)
        self.postmaster_subject = values.get("postmaster-subject", self.postmaster_subject)

    def from_header(self, hfrom_format):
        return self.std_from if hfrom_format == HFROM_FORMAT_STD else self.obs_from

    def headers(self, hfrom_format, rcpt, postmaster_copy):
        """bounce_template_headers(): the From:, Subject: and To: header lines."""
        self.parse()
        subject = self.postmaster_subject if self.postmaster_subject and postmaster_copy \
            else self.subject
        return ["From: %s" % self.from_header(hfrom_format), "Subject: %s" % subject,
                "To: %s" % rcpt]

    def expand(self, config):
        """bounce_template_expand(): the message text with $names expanded."""
        self.parse()
        out = []
        for line in self.message_text:
            text, status = mac_expand(line, lambda key, mode: self._lookup(config, key),
                                      FLAG_PRINTABLE)
            if status & PARSE_ERROR:
                msg.fatal("%s: bad $name syntax in %s template: %s"
                          % (self.origin, self.klass, line))
            if status & PARSE_UNDEF:
                msg.fatal("%s: undefined $name in %s template: %s"
                          % (self.origin, self.klass, line))
            out.append(text)
        return out

    def _lookup(self, config, key):
        for name in TIME_PARAMETERS:
            if key.startswith(name + "_"):
                return self._time_value(config, name, key)
        if key in UTF8_PARAMETERS and config.get_bool("smtputf8_enable"):
            return self._utf8_value(key, config.get(key))
        if not known_to_bounce(config, key):
            return None
        return config.get(key)

    def _time_value(self, config, name, key):
        suffix = key[len(name) + 1:]
        seconds = config.get_time(name)
        for unit, divisor in TIME_DIVISORS:
            if suffix != unit:
                continue
            result = int(seconds / divisor)
            if result > 999 and divisor < 86400:
                msg.warn('%s: excessive result "%d" in %s template conversion of '
                         'parameter "%s"' % (self.origin, result, self.klass, key))
                msg.warn('please increase time unit "%s" of "%s" in %s template'
                         % (unit, key, self.klass))
                msg.warn("for instructions see the bounce(5) manual")
            elif result == 0 and seconds and divisor > 1:
                msg.warn('%s: zero result in %s template conversion of parameter "%s"'
                         % (self.origin, self.klass, key))
                msg.warn('please reduce time unit "%s" of "%s" in %s template'
                         % (unit, key, self.klass))
                msg.warn("for instructions see the bounce(5) manual")
            return "%d" % result
        msg.fatal('%s: unrecognized suffix "%s" in parameter "%s"'
                  % (self.origin, suffix, key))

    def _utf8_value(self, key, value):
        if not _allascii(value):
            msg.warn('%s: conversion "%s" failed: non-ASCII input value: "%s"'
                     % (self.origin, key, value))
            return value
        try:
            return ".".join(label.encode("ascii").decode("idna")
                            if label.lower().startswith("xn--") else label
                            for label in value.split("."))
        except UnicodeError:
            msg.warn('%s: conversion "%s" failed: input value: "%s"'
                     % (self.origin, key, value))
            return value

    def dump(self, hfrom_format):
        """bounce_template_dump()."""
        self.parse()
        lines = ["Charset: %s" % self.charset, "From: %s" % self.from_header(hfrom_format),
                 "Subject: %s" % self.subject]
        if self.postmaster_subject:
            lines.append("Postmaster-Subject: %s" % self.postmaster_subject)
        lines.append("")
        return "".join(line + "\n" for line in lines + self.message_text)


class Templates:
    """The failure, delay, success and verify templates (BOUNCE_TEMPLATES)."""

    def __init__(self):
        self.by_class = {klass: Template(klass) for klass in CLASSES}
        self.failure = self.by_class[CLASS_FAILURE]
        self.delay = self.by_class[CLASS_DELAY]
        self.success = self.by_class[CLASS_SUCCESS]
        self.verify = self.by_class[CLASS_VERIFY]

    def load_file(self, path):
        """bounce_templates_load() of bounce_template_file (load_file(): fatal when the
        file cannot be opened)."""
        try:
            with open(path, "rb") as stream:
                data = stream.read()
        except OSError as exc:
            msg.fatal("open %s: %s" % (path, msg.strerror(exc)))
        self.load(path, data.decode("utf-8", "surrogateescape"))

    def load(self, path, text):
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lineno = 1
        index = 0
        while index < len(lines):
            line = lines[index]
            index += 1
            lineno += 1
            stripped = line.lstrip(" \t\n\v\f\r")
            if not stripped or stripped.startswith("#"):
                continue
            name, value, err = split_nameval(line)
            if err:
                msg.fatal('%s, line %d: %s: "%s"' % (path, lineno, err, line))
            if value.startswith("<<"):
                marker = value[2:].lstrip(" \t\n\v\f\r")
                if not marker:
                    msg.fatal("%s, line %d: missing end marker after <<" % (path, lineno))
                if not (marker[0].isascii() and marker[0].isalnum()):
                    msg.fatal("%s, line %d: malformed end marker after <<" % (path, lineno))
                body = []
                found = False
                while index < len(lines):
                    text_line = lines[index]
                    index += 1
                    lineno += 1
                    if text_line == marker:
                        found = True
                        break
                    body.append(text_line)
                if not found:
                    msg.warn('%s, line %d: missing "%s" end marker' % (path, lineno, marker))
                value = "\n".join(body)
            template = self.by_class.get(name[:-len("_template")]) \
                if name.endswith("_template") else None
            if template is None:
                msg.warn("%s, line %d: unknown template name: %s -- ignoring this template"
                         % (path, lineno, name))
                continue
            template.load(path, value)

    def dump(self, hfrom_format):
        """bounce_templates_dump(): what `postconf -t` prints."""
        return "\n".join("%s_template = <<EOF\n%sEOF\n" % (klass, self.by_class[klass].dump(
            hfrom_format)) for klass in CLASSES)

    def expand(self, config):
        """bounce_templates_expand(): what `postconf -b` prints."""
        return "\n".join("expanded_%s_text = <<EOF\n%sEOF\n" % (
            klass, "".join(line + "\n" for line in self.by_class[klass].expand(config)))
            for klass in CLASSES)


def hfrom_format(config):
    """header_from_format (hfrom_format_parse()): 1 standard, 0 obsolete."""
    value = config.get("header_from_format")
    if value == "standard":
        return HFROM_FORMAT_STD
    if value == "obsolete":
        return HFROM_FORMAT_OBS
    msg.fatal('invalid setting: "%s = %s"' % ("header_from_format", value))


def load_templates(config):
    templates = Templates()
    path = config.get("bounce_template_file")
    if path:
        templates.load_file(path)
    return templates
