"""A scripted SMTP/LMTP server for the smtp client tests: listens on 127.0.0.1 (or a
unix socket), answers each command by a rule table, records every line the client
sent (commands and message content), so that two clients (Debian's smtp and pyfix's)
can be compared on what they said as well as on what they logged.

rules maps a command word ("CONNECT", "EHLO", "MAIL", "RCPT", "DATA", ".", "RSET",
"QUIT") or a command with its argument prefix ("RCPT TO:<bad@") to the reply text
(possibly multi-line, "\\n" separated, or a list: one reply per recipient for LMTP's
"."). "DROP" as a reply closes the connection without replying; "HANG" stops
answering (for timeouts).
"""

import os
import socket
import threading

DEFAULT_EHLO = ("250-{name}\n250-PIPELINING\n250-SIZE 10240000\n250-ENHANCEDSTATUSCODES\n"
                "250-8BITMIME\n250-DSN\n250 SMTPUTF8")


class ScriptServer:
    def __init__(self, rules=None, lmtp=False, name="script.example", path=None,
                 host="127.0.0.1", port=0):
        self.rules = dict(rules or {})
        self.lmtp = lmtp
        self.name = name
        self.transcripts = []           # one list of received lines per session
        self._stop = threading.Event()
        if path:
            self.path = path
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(path)
            os.chmod(path, 0o777)
            self.port = None
        else:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, port))
            self.port = self.listener.getsockname()[1]
            self.path = None
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self._threads = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    def _rule(self, line):
        """The reply of the longest matching rule: a bare verb matches the command
        word, a key with a space or colon matches the start of the line."""
        upper = line.upper()
        verb = upper.split(" ")[0]
        best = None
        for key, reply in self.rules.items():
            wanted = key.upper()
            if (" " in wanted or ":" in wanted) and upper.startswith(wanted) \
                    or wanted == verb:
                if best is None or len(key) > len(best[0]):
                    best = (key, reply)
        return best[1] if best else None

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._session, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _session(self, conn):
        transcript = []
        self.transcripts.append(transcript)
        conn.settimeout(30)
        reader = conn.makefile("rb")
        rcpts = 0
        try:
            if not self._send(conn, self.rules.get("CONNECT", "220 %s ESMTP" % self.name)):
                return
            while not self._stop.is_set():
                raw = reader.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                transcript.append(line)
                verb = line.split(" ")[0].upper()
                reply = self._rule(line)
                if verb in ("EHLO", "LHLO") and reply is None:
                    reply = DEFAULT_EHLO.format(name=self.name)
                elif verb == "HELO" and reply is None:
                    reply = "250 %s" % self.name
                elif verb == "MAIL" and reply is None:
                    rcpts = 0
                    reply = "250 2.1.0 Ok"
                elif verb == "RCPT" and reply is None:
                    reply = "250 2.1.5 Ok"
                elif verb == "DATA" and reply is None:
                    reply = "354 End data with <CR><LF>.<CR><LF>"
                elif verb == "QUIT" and reply is None:
                    self._send(conn, "221 2.0.0 Bye")
                    return
                elif reply is None:
                    reply = "250 2.0.0 Ok"
                if verb == "RCPT" and reply.startswith("2"):
                    rcpts += 1
                if not self._send(conn, reply):
                    return
                if verb == "DATA" and reply.startswith("354"):
                    while True:
                        raw = reader.readline()
                        if not raw:
                            return
                        text = raw.decode("utf-8", "replace").rstrip("\r\n")
                        transcript.append(text)
                        if text == ".":
                            break
                    final = self.rules.get(".", "250 2.0.0 Ok: queued as SCRIPT1")
                    replies = final if isinstance(final, list) else \
                        [final] * (rcpts if self.lmtp else 1)
                    for reply in replies:
                        if not self._send(conn, reply):
                            return
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()

    def _send(self, conn, reply):
        if reply == "DROP":
            return False
        if reply == "HANG":
            self._stop.wait(60)
            return False
        lines = reply.split("\n")
        conn.sendall("".join(line + "\r\n" for line in lines).encode())
        return True

    def stop(self):
        self._stop.set()
        self.listener.close()
        self._accept.join(5)
        for thread in self._threads:
            thread.join(5)
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)
