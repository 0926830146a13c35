"""Real PostgreSQL and OpenLDAP servers for the table tests, on loopback, in temp dirs.

Each server runs in the foreground as a child of the test process (so that its pid is
ours to stop), in a directory under /tmp with mode 0755 (PostgreSQL runs as the
`postgres` user, which must reach it; pytest's tmp_path is 0700), on a free port, and is
stopped by its pid. The recipes are those of ../shared/peer-services.md §2 and §3.

missing() says why a server cannot run here (a binary that is not installed), so that a
test skips with that reason; under CI=true a missing server is a failure instead, so
that a missing install step in .ci/run shows up.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def skip_or_fail(reason):
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: .ci/run must install it)")
    pytest.skip(reason)


def _tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Server:
    """A daemon child process; stop() signals it by pid and removes its directory."""

    stop_signal = signal.SIGTERM
    log_name = "server.log"

    def __init__(self, prefix):
        self.root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.chmod(self.root, 0o755)
        self.proc = None
        self.port = None

    @property
    def log(self):
        return os.path.join(self.root, self.log_name)

    def spawn(self, argv):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.root)

    def wait_ready(self, probe, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited (%s):\n%s" % (self.proc.returncode,
                                                                _tail(self.log)))
            if probe():
                return
            time.sleep(0.1)
        raise RuntimeError("server not ready after %ss:\n%s" % (timeout, _tail(self.log)))

    def pause(self):
        """Stop the server but keep its directory, for "server down" tests; start()
        brings it back on the same port."""
        self._signal_and_wait()

    def _signal_and_wait(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        self._signal_and_wait()
        shutil.rmtree(self.root, ignore_errors=True)


# -- PostgreSQL -------------------------------------------------------------------------------

def postgres_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: [int(p) for p in d.split("/")[-2].split(".") if p.isdigit()])
    for folder in reversed(dirs):
        if os.access(os.path.join(folder, "postgres"), os.X_OK):
            return folder
    return None


def postgres_missing():
    if postgres_bin() is None:
        return "PostgreSQL server is not installed (/usr/lib/postgresql/*/bin/postgres)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no 'postgres' user to run the PostgreSQL server"
    if os.geteuid() != 0:
        return "the PostgreSQL fixture runs the server as 'postgres' and needs root"
    return None


class Postgres(Server):
    """initdb + postgres as the `postgres` user; TCP on 127.0.0.1:port, socket in root."""

    stop_signal = signal.SIGINT          # fast shutdown
    log_name = "postgres.log"

    def __init__(self):
        super().__init__("pyfix-pg-")
        self.bin = postgres_bin()
        shutil.chown(self.root, "postgres", "postgres")
        self.data = os.path.join(self.root, "data")
        try:
            self._as_postgres([os.path.join(self.bin, "initdb"), "-D", self.data, "-U",
                               "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
                               "--no-sync"])
            self.start()
        except Exception:
            self.stop()
            raise

    def _as_postgres(self, argv):
        subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
                       + argv, cwd=self.root, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def start(self, port=None):
        self.port = port or self.port or free_port()
        self.spawn(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                    os.path.join(self.bin, "postgres"), "-D", self.data,
                    "-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-k", self.root,
                    "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off"])
        self.wait_ready(self._probe, 30)
        return self

    def _probe(self):
        try:
            self.execute("SELECT 1")
            return True
        except Exception:       # noqa: BLE001 - any failure means "not yet"
            return False

    def connect(self):
        import psycopg
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                               dbname="postgres", connect_timeout=2, autocommit=True)

    def execute(self, sql, params=None):
        with self.connect() as conn:
            conn.execute(sql, params)

    @property
    def socket_dir(self):
        return self.root


# -- OpenLDAP slapd ----------------------------------------------------------------------------

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis", "misc")

SLAPD_CONF = """\
{includes}
TLSCertificateFile {root}/cert.pem
TLSCertificateKeyFile {root}/key.pem
pidfile  {root}/slapd.pid
argsfile {root}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw secret
directory {root}/db
maxsize 10485760
index objectClass eq
{acl}
"""


def slapd_missing():
    if shutil.which("openssl") is None:
        return "openssl is not installed (the slapd fixture makes a certificate with it)"
    for path in (SLAPD, SLAPADD):
        if not os.access(path, os.X_OK):
            return "OpenLDAP slapd is not installed (%s)" % path
    for name in SCHEMAS:
        if not os.path.exists("/etc/ldap/schema/%s.schema" % name):
            return "OpenLDAP schema %s is not installed" % name
    return None


def self_signed_cert(folder, name="127.0.0.1"):
    """cert.pem and key.pem in folder: a self-signed certificate for IP address name."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + name, "-addext", "subjectAltName=IP:" + name,
                    "-keyout", os.path.join(folder, "key.pem"),
                    "-out", os.path.join(folder, "cert.pem")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(folder, "cert.pem")


class Slapd(Server):
    """slapd -d stats on ldap://127.0.0.1:port (STARTTLS too) and ldaps://127.0.0.1:ssl_port,
    with a self-signed certificate (self.cert) and an mdb database loaded by slapadd."""

    log_name = "slapd.log"

    def __init__(self, suffix, ldif, acl="access to * by * read"):
        super().__init__("pyfix-slapd-")
        self.suffix = suffix
        os.mkdir(os.path.join(self.root, "db"))
        self.cert = self_signed_cert(self.root)
        self.ssl_port = None
        includes = "\n".join("include /etc/ldap/schema/%s.schema" % n for n in SCHEMAS)
        self.conf = os.path.join(self.root, "slapd.conf")
        with open(self.conf, "w") as f:
            f.write(SLAPD_CONF.format(includes=includes, root=self.root, suffix=suffix,
                                      acl=acl))
        data = os.path.join(self.root, "data.ldif")
        with open(data, "w") as f:
            f.write(ldif)
        load = subprocess.run([SLAPADD, "-f", self.conf, "-l", data, "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if load.returncode:
            self.stop()
            raise RuntimeError("slapadd failed:\n" + load.stdout)
        try:
            self.start()
        except Exception:
            self.stop()
            raise

    @property
    def url(self):
        return "ldap://127.0.0.1:%d" % self.port

    def start(self, port=None):
        self.port = port or self.port or free_port()
        self.ssl_port = self.ssl_port or free_port()
        self.spawn([SLAPD, "-d", "stats", "-h", "ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/"
                    % (self.port, self.ssl_port), "-f", self.conf])
        self.wait_ready(self._probe, 15)
        return self

    def _probe(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


# -- one server of each kind per test session -----------------------------------------------

_running = {}


def shared(request, name, factory, missing):
    """The session's server `name`, started by factory() on first use and stopped (by
    its pid) when the session ends; skips (or fails under CI) when missing() says why
    it cannot run."""
    server = _running.get(name)
    if server is not None:
        return server
    reason = missing()
    if reason:
        skip_or_fail(reason)
    server = _running[name] = factory()

    def stop():
        _running.pop(name, None)
        server.stop()

    request.config.add_cleanup(stop)
    return server
