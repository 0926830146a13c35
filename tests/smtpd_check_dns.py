"""A real authoritative DNS server for the DNS-based restrictions: Knot DNS (Debian's
knot package) on a private loopback address, port 53, serving the zone `test.`.

Port 53 matters: Debian's Postfix resolves through the C library, whose resolv.conf
cannot name a port. The oracle runs Postfix's smtpd chrooted into its queue directory,
where etc/resolv.conf names this server; pyfix is pointed at it with its own
parameter pyfix_dns_servers. Names outside `test.` get REFUSED (a temporary failure
for both resolvers).
"""

import os
import random
import shutil
import signal
import subprocess
import tempfile

from master_run import wait_until

KNOTD = "/usr/sbin/knotd"

ZONE = """\
$ORIGIN test.
$TTL 300
@        SOA ns.test. hostmaster.test. 1 3600 600 86400 300
@        NS  ns.test.
ns       A   {address}
host     A   192.0.2.1
host6    AAAA 2001:db8::1
mxonly   MX  10 host.test.
nullmx   MX  0 .
mail     MX  10 host.test.
badmx    MX  10 nowhere.test.
; a DNS block list (client 192.0.2.10 and 192.0.2.11) and a right-hand-side list
10.2.0.192.rbl    A   127.0.0.2
10.2.0.192.rbl    TXT "listed for testing"
11.2.0.192.rbl    A   127.0.0.4
spam.example.rhsbl A  127.0.0.2
spam.example.rhsbl TXT "spam domain"
client.example.net.rhsbl A 127.0.0.2
blocked.test.rhsbl A 127.0.0.2
10.2.0.192.wl     A   127.0.0.2
0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.rbl A 127.0.0.2
; MX sets for permit_mx_backup (this host is 127.0.0.1)
me       A   127.0.0.1
backup   MX  10 host.test.
backup   MX  20 me.test.
primary  MX  10 me.test.
primary  MX  20 host.test.
nobackup MX  10 host.test.
lostmx   MX  10 host.test.
lostmx   MX  20 gone.test.
"""

CONFIG = """\
server:
    rundir: "{root}/run"
    listen: {address}@53
database:
    storage: "{root}/db"
template:
  - id: default
    storage: "{root}/zones"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: test.
    file: test.zone
log:
  - target: stderr
    any: error
"""


def available():
    return os.path.exists(KNOTD) and os.geteuid() == 0


class KnotServer:
    def __init__(self):
        self.address = "127.53.%d.%d" % (random.randint(1, 254), random.randint(1, 254))
        self.root = tempfile.mkdtemp(prefix="pyfix-knot-", dir="/tmp")
        for sub in ("run", "db", "zones"):
            os.makedirs(os.path.join(self.root, sub))
        with open(os.path.join(self.root, "zones", "test.zone"), "w") as f:
            f.write(ZONE.format(address=self.address))
        self.config = os.path.join(self.root, "knot.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(root=self.root, address=self.address))
        self.process = None

    def start(self):
        self.process = subprocess.Popen([KNOTD, "-c", self.config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_until(self._answers, 10):
            self.stop()
            raise AssertionError("knotd did not start")
        return self

    def _answers(self):
        import dns.message
        import dns.query
        try:
            query = dns.message.make_query("host.test.", "A")
            dns.query.udp(query, self.address, timeout=0.5)
            return True
        except Exception:
            return self.process.poll() is not None and False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
