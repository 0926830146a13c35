"""postfix(1): what Postfix's postfix.c does before it runs postfix-script.

  - standard descriptors 0-2 open, umask 022;
  - `-c config_dir` (absolute, exported as MAIL_CONFIG), `-D` (MAIL_DEBUG), `-v`
    (MAIL_VERBOSE); options end at the first non-option argument, the command;
  - main.cf read, with the checks every Postfix program makes of mail_owner,
    setgid_group and default_privs (as root);
  - the environment reduced to import_environment, then the installation parameters
    exported as postfix-script expects them (command_directory, queue_directory, ...);
    PYTHONPATH and PYTHONHOME, when set, are kept for the Python programs it starts
    (pyfix's master and commands), so that they find pyfix where this command found it;
  - the backwards-compatibility notice when compatibility_level is below 3.6;
  - the queue directory as the current directory, then the command (control.py).

Difference from Postfix: postfix(1) refuses to run for anyone but root. pyfix also runs
for an ordinary user (development and tests, DESIGN.md §8): then there is no privilege
check and no privilege change, every file is created as that user, ownership checks
expect that user, the installation directories shared by all instances (daemon_directory,
meta_directory, shlib_directory) are not checked, and a missing queue directory is created (with its parents) by the
commands that create the queue (start, start-fg, check, set-permissions,
upgrade-configuration), so that a fresh development tree starts in one command.
"""

import grp
import os
import pwd
import sys

from pyfix.common import maillog, msg, params
from pyfix.common.clean_env import clean_env, import_env
from pyfix.common.compat_level import compat_level_from_string
from pyfix.common.config import CONFIG_ENV, Config, MainCf
from pyfix.common.getopt import GetoptError, iter_getopt
from pyfix.common.std_fds import open_standard_fds
from pyfix.common.strings import tokens

from pyfix.commands.postfix import postfix_files
from pyfix.commands.postfix.control import dispatch
from pyfix.commands.postfix.tools import quiet

LAST_COMPAT_LEVEL = "3.6"
ROOT_PATH = "/bin:/usr/bin:/sbin:/usr/sbin"
# Parameters postfix(1) exports for postfix-script and post-install, in its order.
EXPORTED = ("command_directory", "daemon_directory", "data_directory", "meta_directory",
            "queue_directory", "config_directory", "shlib_directory", "mail_owner",
            "setgid_group", "sendmail_path", "mailq_path", "newaliases_path",
            "manpage_directory", "sample_directory", "readme_directory", "html_directory")
# What the Python interpreter needs to find pyfix: kept for the programs postfix(1) runs
# (master, postconf, postsuper, ...), whatever import_environment says.
PYTHON_ENV = ("PYTHONPATH", "PYTHONHOME")
# Commands that create the queue directories (post-install create-missing).
CREATING = ("start", "start-fg", "check", "check-fatal", "set-permissions",
            "upgrade-configuration", "post-install")


class Context:
    """Everything the commands need: the configuration and the installation layout."""

    def __init__(self, config, privileged):
        self.config = config
        self.privileged = privileged
        get = config.get
        self.config_dir = get("config_directory")
        self.queue_dir = get("queue_directory")
        self.data_dir = get("data_directory")
        self.command_dir = get("command_directory")
        self.daemon_dir = get("daemon_directory")
        self.meta_dir = get("meta_directory")
        self.shlib_dir = get("shlib_directory")
        self.mail_owner = get("mail_owner")
        self.setgid_group = get("setgid_group")
        self.syslog_name = get("syslog_name")
        self.default_config_dir = params.lookup("config_directory").default
        self.instances = []
        # An ordinary user's instance leaves the system's installation alone.
        self.shared_files = privileged
        self.child_env = None

    # -- multi-instance ---------------------------------------------------------------

    def find_instances(self):
        """multi_instance_directories of the default instance; whether this instance
        is the default one or a secondary one (that leaves shared files alone)."""
        main_cf = os.path.join(self.default_config_dir, "main.cf")
        if os.path.isfile(main_cf):
            if os.path.realpath(self.config_dir) == os.path.realpath(self.default_config_dir):
                value = self.config.raw("multi_instance_directories")
            else:
                try:
                    with quiet():
                        value = MainCf.read(main_cf).entries.get("multi_instance_directories")
                except msg.Fatal:
                    value = None
            self.instances = tokens(value or "")
        for name in self.instances:
            if name == self.default_config_dir:
                continue
            if name == self.config_dir:
                self.shared_files = False
                break

    # -- owners ------------------------------------------------------------------------

    def _invoking_user(self):
        uid = os.getuid()
        try:
            return pwd.getpwuid(uid).pw_name, uid
        except KeyError:
            return str(uid), uid

    def root_owner(self):
        return ("root", 0) if self.privileged else self._invoking_user()

    def mail_owner_id(self):
        if not self.privileged:
            return self._invoking_user()
        return self.mail_owner, pwd.getpwnam(self.mail_owner).pw_uid

    def setgid_group_id(self):
        return self.setgid_group, grp.getgrnam(self.setgid_group).gr_gid

    def root_trees(self):
        """The root-owned trees check-warn walks: the configuration directory, and (not
        for a secondary instance) the shared installation directories that exist."""
        trees = [self.config_dir + "/."]
        if self.shared_files:
            shared = [self.daemon_dir, self.meta_dir]
            if self.shlib_dir != "no":
                shared.append(self.shlib_dir)
            trees += [d + "/." for d in shared if os.path.isdir(d)]
        return trees

    def install_values(self):
        """post-install's installation parameters, from the exported environment."""
        values = {name: self.config.get(name) for name in postfix_files.MOST_PARAMETERS}
        values["config_directory"] = self.config_dir
        return values


# -- postfix.c -----------------------------------------------------------------------------

def parse_options(progname, args):
    """Act on -c/-D/-v in order, as postfix.c's getopt loop; return the command words."""
    usage = "usage: %s [-c config_dir] [-Dv] command" % progname
    try:
        for letter, value in iter_getopt(args, "c:Dv"):
            if letter is None:
                return value
            if letter == "c":
                if not value.startswith("/"):
                    msg.fatal("-c requires absolute pathname")
                os.environ[CONFIG_ENV] = value
            elif letter == "D":
                os.environ["MAIL_DEBUG"] = ""
            elif letter == "v":
                msg.verbose += 1
                os.environ["MAIL_VERBOSE"] = ""
    except GetoptError as exc:
        sys.stderr.write("%s: %s\n" % (progname, exc))
        sys.stderr.flush()
        msg.fatal(usage)
    return []


def check_accounts(config):
    """mail_params_init()'s checks of the accounts Postfix runs as (check_default_privs,
    check_mail_owner, check_sgid_group, check_overlap)."""
    where = "file %s/main.cf: " % config.get("config_directory")
    default_privs, owner, group = (config.get("default_privs"), config.get("mail_owner"),
                                   config.get("setgid_group"))
    users = {}
    for param, name in (("default_privs", default_privs), ("mail_owner", owner)):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            msg.fatal("%sparameter %s: unknown user name value: %s" % (where, param, name))
        if entry.pw_uid == 0:
            msg.fatal("%sparameter %s: user %s has privileged user ID" % (where, param, name))
        if entry.pw_gid == 0:
            msg.fatal("%sparameter %s: user %s has privileged group ID" % (where, param, name))
        if param == "mail_owner":
            try:
                other = pwd.getpwuid(entry.pw_uid).pw_name
            except KeyError:
                other = name
            if other != name:
                msg.fatal("%sparameter %s: user %s has same user ID as %s"
                          % (where, param, name, other))
        users[param] = entry
    try:
        sgid = grp.getgrnam(group).gr_gid
    except KeyError:
        msg.fatal("%sparameter setgid_group: unknown group name: %s" % (where, group))
    if sgid == 0:
        msg.fatal("%sparameter setgid_group: group %s has privileged group ID" % (where, group))
    try:
        other = grp.getgrgid(sgid).gr_name
    except KeyError:
        other = group
    if other != group:
        msg.fatal("%sparameter setgid_group: group %s has same group ID as %s"
                  % (where, group, other))
    dflt, own = users["default_privs"], users["mail_owner"]
    if default_privs == owner:
        msg.fatal("%sparameters default_privs and mail_owner specify the same user %s"
                  % (where, owner))
    for same, text in (
            (dflt.pw_uid == own.pw_uid, "parameters default_privs and mail_owner: users %s "
             "and %s have the same user ID: %d" % (default_privs, owner, own.pw_uid)),
            (dflt.pw_gid == own.pw_gid, "parameters default_privs and mail_owner: users %s "
             "and %s have the same group ID: %d" % (default_privs, owner, own.pw_gid)),
            (dflt.pw_gid == sgid, "parameters default_privs and setgid_group: user %s "
             "and group %s have the same group ID: %d" % (default_privs, group, sgid)),
            (own.pw_gid == sgid, "parameters mail_owner and setgid_group: user %s "
             "and group %s have the same group ID: %d" % (owner, group, sgid))):
        if same:
            msg.fatal(where + text)


def compatibility_notice(config):
    level = compat_level_from_string(config.get("compatibility_level"), msg.fatal)
    if level < compat_level_from_string(LAST_COMPAT_LEVEL, msg.panic):
        msg.info("Postfix is using backwards-compatible default settings")
        msg.info("See http://www.postfix.org/COMPATIBILITY_README.html for details")
        msg.info('To disable backwards compatibility use "postconf compatibility_level=%s"'
                 ' and "postfix reload"' % LAST_COMPAT_LEVEL)


def init_logging(tag, config=None):
    """Diagnostics under `tag` to syslog or the postlog service (maillog_file), with a
    copy on stderr when stderr is a terminal, as Postfix's commands do."""
    maillog.init(tag, config, stderr=tag if os.isatty(2) else None, fallback=True)


def setup(progname, args):
    """postfix.c from the options to the chdir; returns (Context, command words)."""
    privileged = os.getuid() == 0
    words = parse_options(progname, args)
    force_single_instance = CONFIG_ENV in os.environ
    config = Config.load(os.environ.get(CONFIG_ENV))
    compat_level_from_string(config.get("compatibility_level"), msg.fatal)
    if privileged:
        check_accounts(config)
    os.environ["MAIL_LOGTAG"] = config.get("syslog_name")
    interpreter = {name: os.environ[name] for name in PYTHON_ENV if name in os.environ}
    clean_env(import_env(config))
    init_logging(progname, config)
    compatibility_notice(config)
    ctx = Context(config, privileged)
    os.environ["PATH"] = ROOT_PATH
    os.environ[CONFIG_ENV] = ctx.config_dir
    for name in EXPORTED:
        os.environ[name] = config.get(name)
    command = words[0] if words else ""
    if not privileged and command in CREATING and not os.path.isdir(ctx.queue_dir):
        try:
            os.makedirs(ctx.queue_dir)
        except OSError:
            pass                        # the chdir below reports it
    try:
        os.chdir(ctx.queue_dir)
    except OSError as exc:
        msg.fatal("chdir(%s): %s" % (ctx.queue_dir, msg.strerror(exc)))
    if not force_single_instance and config.get_list("multi_instance_directories"):
        wrapper = config.get("multi_instance_wrapper")
        if not wrapper:
            msg.fatal("multi-instance support is requested, but multi_instance_wrapper"
                      " is empty")
        msg.fatal("multi-instance operation (multi_instance_wrapper = %s) is not"
                  " supported by pyfix" % wrapper)
    ctx.child_env = dict(os.environ, **interpreter)
    ctx.find_instances()
    return ctx, words


def main(argv=None):
    argv = sys.argv if argv is None else argv
    progname = os.path.basename(argv[0]) or "postfix"
    os.umask(0o022)
    open_standard_fds()
    init_logging(progname)
    try:
        ctx, words = setup(progname, argv[1:])
        init_logging("%s/postfix-script" % ctx.syslog_name, ctx.config)
        status = dispatch(ctx, words)
    except KeyboardInterrupt:
        status = 1
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
