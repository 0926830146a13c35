"""smtpd's stand-alone mode, `smtpd -S` as `sendmail -bs` runs it (Postfix's
SMTPD_STAND_ALONE in smtpd.c and smtpd.h).

The client is the user who ran sendmail, on standard input and output, and the process
runs with that user's uid. Postfix then (SMTPD_STAND_ALONE: stream on stdin and uid not
mail_owner) skips every access restriction, XCLIENT, XFORWARD, anvil, STARTTLS, AUTH,
bare-LF detection and the pipelining check, refuses ETRN, and does not talk to cleanup:
the message goes through `$command_directory/postdrop -r` like sendmail's, with only
the sender, recipients and content (the client attributes are left out).

StdioRelay: the session's asyncio transport wants a socket, but standard input and output
are usually pipes; when they are not one socket, they are relayed to one end of a socket
pair whose other end becomes descriptors 0 and 1 (done before the server skeleton
starts, which serves `-S` on descriptor 0). PostdropCleanup gives postdrop's stream
(commands/sendmail_enqueue.py PostdropStream) the cleanup client's interface.
"""

import os
import pwd
import socket
import stat
import threading

from pyfix.commands.sendmail_enqueue import PostdropStream, export_env, postdrop_command

BUFSIZE = 65536


def stand_alone(server):
    """SMTPD_STAND_ALONE(): serving standard input, and not as mail_owner."""
    if not server.stream_mode:
        return False
    try:
        owner_uid = pwd.getpwnam(server.config.get("mail_owner")).pw_uid
    except KeyError:
        owner_uid = None
    return os.getuid() != owner_uid


# -- standard input and output as one socket -------------------------------------------------

class StdioRelay:
    """Copy real standard input to the session socket and the session's output to real
    standard output, in two threads."""

    def __init__(self):
        self.stdin = os.dup(0)
        self.stdout = os.dup(1)
        ours, theirs = socket.socketpair()
        os.dup2(theirs.fileno(), 0)
        os.dup2(theirs.fileno(), 1)
        theirs.close()
        self.sock = ours
        self.reader = threading.Thread(target=self._copy_in, daemon=True)
        self.writer = threading.Thread(target=self._copy_out, daemon=True)
        self.reader.start()
        self.writer.start()

    def _copy_in(self):
        try:
            while True:
                data = os.read(self.stdin, BUFSIZE)
                if not data:
                    break
                self.sock.sendall(data)
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_WR)      # the session sees the client's EOF
        except OSError:
            pass

    def _copy_out(self):
        broken = False
        while True:
            try:
                data = self.sock.recv(BUFSIZE)
            except OSError:
                break
            if not data:
                break
            while data and not broken:
                try:
                    data = data[os.write(self.stdout, data):]
                except OSError:
                    broken = True           # keep draining so that the session can't block

    def finish(self):
        """End of session: pass on all output, then close standard output."""
        try:
            session = socket.socket(fileno=os.dup(1))
            session.shutdown(socket.SHUT_WR)
            session.close()
        except OSError:
            pass
        self.writer.join()
        os.close(self.stdout)


def relay_stdio_if_needed():
    """A StdioRelay unless descriptors 0 and 1 already are one socket (inetd style)."""
    try:
        st_in, st_out = os.fstat(0), os.fstat(1)
    except OSError:
        return StdioRelay()
    if stat.S_ISSOCK(st_in.st_mode) and (st_in.st_dev, st_in.st_ino) \
            == (st_out.st_dev, st_out.st_ino):
        return None
    return StdioRelay()


# -- the message through postdrop ---------------------------------------------------------

class PostdropCleanup:
    """mail_stream_command(postdrop -r) with the CleanupClient methods smtpd uses."""

    def __init__(self, config):
        uid = os.getuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = "unknown"
        argv, display = postdrop_command(config, uid)
        self.stream = PostdropStream(argv, display, export_env(config), user, uid)
        self.queue_id = self.stream.queue_id
        self.open = True

    def put(self, rec_type, payload=b""):
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "surrogateescape")
        elif isinstance(payload, bytearray):
            payload = bytes(payload)
        self.stream.put(rec_type, payload)
        return True

    def flush(self):
        self.stream.flush()
        return True

    def finish(self):
        """mail_stream_finish(): postdrop's (status, reason)."""
        self.open = False
        return self.stream.finish()

    def close(self):
        """mail_stream_cleanup(): postdrop sees EOF before the end record and drops
        the file."""
        if not self.open:
            return
        self.open = False
        self.stream.sock.close()
        self.stream.proc.wait()
