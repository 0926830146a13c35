"""smtp(8) and lmtp(8): the SMTP/LMTP delivery agent (Postfix's src/smtp/smtp.c).

One delivery request from qmgr at a time (daemons/skeleton/single.py): find the
servers of the nexthop, talk SMTP (or LMTP, when the program is `lmtp`) to them until
every recipient is delivered, bounced or deferred, and report each recipient's fate
through the status services (`status=sent|deferred|bounced` log lines). The seams
follow Postfix's:

    params.py   the smtp_* / lmtp_* parameters of this process (VAR_LMTP_SMTP())
    addr.py     MX and address lookups, the "loops back to myself" check (smtp_addr.c)
    connect.py  nexthop parsing, the host iteration, the TCP/unix connection
                (smtp_connect.c)
    session.py  one conversation: replies, commands, timeouts (smtp_session.c,
                smtp_chat.c); the interface shared with smtp_tls.py and smtp_sasl.py
    proto.py    greeting, EHLO/HELO/LHLO, MAIL, RCPT, DATA, QUIT (smtp_proto.c)
    commands.py the command lines: MAIL FROM, RCPT TO, XFORWARD; the headers of
                master.cf flags=DOR (smtp_proto.c)
    content.py  the message content from the queue file, dot-stuffed, MIME
                downgraded for servers without 8BITMIME (smtp_proto.c smtp_text_out())
    state.py    the per-request state and the recipient fates: sent, deferred,
                bounced, kept for the next host (smtp_state.c, smtp_rcpt.c,
                smtp_trouble.c)
    reuse.py    connection reuse through scache (smtp_reuse.c)
    smtp_tls.py, smtp_tls_policy.py, smtp_tls_ossl.py, smtp_sasl.py
                STARTTLS/TLS and AUTH (written separately, called from proto.py)

Left out so far: smtp_generic_maps, smtp_header_checks/smtp_body_checks and the
MIME header checks, smtp_delivery_status_filter, smtp_reply_filter,
smtp_dns_reply_filter and DNSSEC, smtp_pix_workarounds, best_mx_transport,
smtp_balance_inet_protocols, the notify_classes protocol transcripts.
"""

from pyfix.common import dns, msg
from pyfix.common import info_log_addr_form as log_form
from pyfix.queue import bounce_clnt, deliver_request
from pyfix.daemons.skeleton.single import single_server_main
# Imported here, not in pre_init: master imports this package before it forks, so
# every smtp process starts with its code loaded (no per-process compile or unmarshal),
# and nothing is left to import after the privilege drop.
from pyfix.daemons.smtp import connect, params, reuse, smtp_sasl, smtp_tls, state


# master.cf `flags=` attributes (get_cli_attr()): prepend Delivered-To:,
# X-Original-To:, Return-Path:; X: the server is the final delivery (LMTP).
CLI_FLAGS = {"D": "delivered_to", "O": "orig_rcpt", "R": "return_path",
             "X": "final_delivery"}


def cli_attr(argv):
    """The set of flag names of the command-line attributes; errors are fatal."""
    flags = set()
    for arg in argv:
        if arg[:6].lower() != "flags=":
            msg.fatal("unknown attribute name: %s" % arg)
        flags = set()
        for char in arg[6:]:
            if char not in CLI_FLAGS:
                msg.fatal('unknown %s value "%s" in "%s"' % (arg, char, arg[6:]))
            flags.add(CLI_FLAGS[char])
    return flags


def smtp_service(conn, server):
    """Serve one delivery request (smtp_service() and deliver_message())."""
    settings = params.current()
    flags = cli_attr(server.argv)
    stream, request = deliver_request.deliver_request_read(conn, server.config,
                                                           server.name)
    if request is None:
        return
    if not request.nexthop:
        msg.fatal("empty nexthop hostname")
    smtp_state = state.SmtpState(request, settings)
    smtp_state.cli_flags = flags
    status = state.check_cli_flags(smtp_state, server.name)
    if status is None:
        status = connect.smtp_connect(smtp_state)
    deliver_request.deliver_request_done(stream, request, status)


def pre_init(server):
    bounce_clnt.configure(server.config)
    log_form.init(server.config)
    dns.init(server.config)
    params.init(server)
    reuse.init(params.current())
    # TLS and SASL tables, certificates and password files before the privilege drop.
    smtp_tls.pre_init(server.config, params.current().lmtp)
    smtp_sasl.pre_init(server.config, params.current().lmtp)


def main(argv):
    single_server_main(argv, smtp_service, pre_init=pre_init)
