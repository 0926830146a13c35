"""pyfix's set-gid programs: the compiled launcher (launcher.c) and its Python side.

Postfix gives postdrop(1) and postqueue(1) the set-gid bit of the `postdrop` group
(setgid_group): the maildrop directory is postfix:postdrop 1730 and public/ is
postfix:postdrop 2710, so any local user can submit mail and ask for the queue through
those two programs, and through nothing else. A Python program cannot carry a set-gid
bit (the kernel ignores it on scripts), so pyfix compiles launcher.c once per program
and installs the result set-gid in $command_directory, where Postfix's binaries were:

    python -m pyfix.commands.setgid install [-g group] [-c config_dir] DIR [program ...]

builds DIR/postdrop (and the other programs named, default postdrop) for the Python
that runs the command, owned by root and the set-gid group, mode 2755. It refuses when
the interpreter, pyfix or any directory above them could be changed by anybody but
root, because the launcher would run that code with the group's privilege.

At run time the launcher executes `python -I -c ... <program> <config dir> args`;
launch() below takes over: the default configuration directory is the one compiled
in (Postfix's DEF_CONFIG_DIR), a different MAIL_CONFIG must be listed in that
directory's main.cf (alternate_config_directories or multi_instance_directories), and
the program's own main() runs with argv[0] set to its real name.
"""

import os
import stat
import subprocess
import sys
import tempfile

PROGRAMS = {"postdrop": "pyfix.commands.postdrop", "postqueue": "pyfix.commands.postqueue"}
LAUNCHER_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.c")


def launch(argv):
    """Entry point of the compiled launcher: argv is [-c, program, config dir, args...]."""
    import importlib
    from pyfix.common import config as config_mod
    from pyfix.common import msg
    progname, config_dir = argv[1], argv[2]
    module = PROGRAMS.get(progname)
    if module is None:
        sys.stderr.write("pyfix-setgid: fatal: unknown program: %s\n" % progname)
        return 1
    config_mod.DEFAULT_CONFIG_DIR = config_dir
    sys.argv = [progname] + list(argv[3:])
    msg.init_stderr(progname)
    main = importlib.import_module(module).main
    return main()


# -- building and installing ------------------------------------------------------------

def c_string(text):
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError("control character in %r" % text)
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def unsafe_paths(path):
    """The path and its parents that a user other than root could change: owned by
    someone else, or writable by group or others (a root-owned sticky directory such as
    /tmp is fine: nobody can replace what root put there)."""
    problems = []
    path = os.path.abspath(path)
    while True:
        try:
            st = os.lstat(path)
        except OSError as exc:
            problems.append("%s: %s" % (path, exc.strerror))
            break
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not stat.S_ISLNK(st.st_mode)
        sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_uid != 0 or (writable and not (sticky and st.st_uid == 0)):
            problems.append(path)
        if stat.S_ISLNK(st.st_mode):
            target = os.path.join(os.path.dirname(path), os.readlink(path))
            problems.extend(unsafe_paths(target))
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return problems


def build(program, output, config_dir="/etc/postfix", python=None, cc="cc"):
    """Compile the launcher of one program into output (not installed yet)."""
    if program not in PROGRAMS:
        raise ValueError("unknown program: %s" % program)
    python = python or sys.executable
    subprocess.run([cc, "-O2", "-Wall", "-o", output,
                    "-DPYFIX_PYTHON=%s" % c_string(python),
                    "-DPYFIX_PROGNAME=%s" % c_string(program),
                    "-DPYFIX_CONFIG_DIR=%s" % c_string(config_dir),
                    LAUNCHER_SOURCE], check=True)


def install(directory, programs=("postdrop",), group="postdrop", config_dir="/etc/postfix",
            python=None, check=True):
    """Build and install the launchers set-gid `group` in directory (as root)."""
    import grp
    import importlib.util
    python = python or sys.executable
    if check:
        # The interpreter, its installation (a venv's site-packages) and pyfix's code.
        problems = unsafe_paths(python) + unsafe_paths(os.path.realpath(python))
        problems += unsafe_paths(os.path.dirname(os.path.dirname(os.path.abspath(python))))
        for package in ("commands", "common", "queue", "maps"):
            spec = importlib.util.find_spec("pyfix." + package)
            for path in (spec.submodule_search_locations or []) if spec else []:
                if os.path.isabs(path) and os.path.isdir(path):
                    problems += unsafe_paths(path)
        if problems:
            raise PermissionError("refusing to install set-gid programs: changeable by "
                                  "others: %s" % ", ".join(sorted(set(problems))))
    gid = grp.getgrnam(group).gr_gid
    for program in programs:
        fd, temp = tempfile.mkstemp(prefix=".%s." % program, dir=directory)
        os.close(fd)
        try:
            build(program, temp, config_dir, python)
            os.chown(temp, 0, gid)
            os.chmod(temp, 0o2755)
            os.rename(temp, os.path.join(directory, program))
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m pyfix.commands.setgid")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="build and install the set-gid launchers")
    inst.add_argument("-g", "--group", default="postdrop", help="set-gid group (postdrop)")
    inst.add_argument("-c", "--config-dir", default="/etc/postfix",
                      help="default configuration directory compiled in (/etc/postfix)")
    inst.add_argument("directory", help="where to install ($command_directory)")
    inst.add_argument("programs", nargs="*", default=["postdrop"],
                      help="programs to install (postdrop, postqueue)")
    args = parser.parse_args(argv)
    try:
        install(args.directory, args.programs, args.group, args.config_dir)
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as exc:
        sys.stderr.write("%s: %s\n" % (parser.prog, exc))
        return 1
    return 0
