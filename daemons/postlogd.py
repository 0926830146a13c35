"""postlogd(8): write the log records of every pyfix process to $maillog_file (Postfix's
src/postlogd).

Processes that log while maillog_file is set send each finished line as one datagram to
the postlog service (unix-dgram, one process). postlogd appends them to the file, which
it opens once before it drops privileges; its own diagnostics take the same way. Without
maillog_file it passes the records on to syslog under the tag they carry. It is exempt
from max_use, as in Postfix.
"""

from pyfix.common import maillog, msg
from pyfix.common.strings import SPACE

from pyfix.daemons.skeleton.dgram import dgram_server_main

_log_fd = None


def postlogd_service(data, server):
    if _log_fd is not None:
        try:
            maillog.logwriter_write(_log_fd, data)
        except OSError:
            pass
        return
    _relay_to_syslog(data, server)


def _relay_to_syslog(data, server):
    """Strip the `date time host name[pid]:` that the client put in front, and log the
    rest under that name, so that syslog sees what the client would have sent it."""
    text = data.decode("utf-8", "surrogateescape")
    fields = text.split(None, 4)
    if len(fields) < 5:
        return
    tag = fields[4].split(":", 1)[0].split()[0] if fields[4] else ""
    rest = fields[4][len(tag):].lstrip(":").lstrip(SPACE)
    if tag:
        maillog.init(tag, server.config)
    msg.info(rest)
    maillog.init(maillog.mail_task(None), server.config)


def _pre_jail_init(server):
    global _log_fd
    if server.argv:
        msg.fatal("unexpected command-line argument: %s" % server.argv[0])
    path = server.config.get("maillog_file")
    if path:
        _log_fd = maillog.logwriter_open_or_die(path)
        maillog.fallback_only(lambda line: maillog.logwriter_write(_log_fd, line))


def _post_jail_init(server):
    server.max_use = 0
    server.daemon_timeout = server.config.get_time("postlogd_watchdog_timeout")


def main(argv):
    dgram_server_main(argv, postlogd_service, pre_init=_pre_jail_init,
                      post_init=_post_jail_init, solitary=True)
