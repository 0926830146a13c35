"""Running the other programs postfix(1) needs: pyfix's master and pyfix's commands.

Postfix's scripts run $daemon_directory/master and $command_directory/postsuper,
postqueue, postconf. pyfix's master is a Python module (`python -m pyfix.master.master`),
and its commands are console scripts of the pyfix distribution: they are found through
the distribution's entry points (not on PATH, where Postfix's programs of the same names
may be), and run with the interpreter that runs this command.
"""

import contextlib
import importlib.metadata
import importlib.util
import subprocess
import sys

from pyfix.common import msg

MASTER_MODULE = "pyfix.master.master"
DISTRIBUTION = "pyfix"


def master_available():
    try:
        return importlib.util.find_spec(MASTER_MODULE) is not None
    except ImportError:
        return False


def master_argv(config_dir, *flags):
    return [sys.executable, "-m", MASTER_MODULE, "-c", config_dir] + list(flags)


def pyfix_entry_point(name):
    """The console-script entry point `name` of the pyfix distribution, or None."""
    try:
        points = importlib.metadata.entry_points(group="console_scripts", name=name)
    except Exception:           # a broken installation: no command
        return None
    for point in points:
        dist = getattr(point, "dist", None)
        if dist is None or dist.metadata["Name"] == DISTRIBUTION:
            return point
    return None


def pyfix_command_argv(name, args):
    """The argv that runs pyfix's command `name`, or None when pyfix has none."""
    point = pyfix_entry_point(name)
    if point is None:
        return None
    module, _, attr = point.value.partition(":")
    code = ("import sys; sys.argv[0] = %r; from %s import %s as main; sys.exit(main())"
            % (name, module.strip(), attr.strip()))
    return [sys.executable, "-c", code] + list(args)


def run_pyfix_command(name, args, env, background=False):
    """Run pyfix's command `name`; its exit status, or None when pyfix has none.

    background=True starts it and returns 0 without waiting (`command &`).
    """
    argv = pyfix_command_argv(name, args)
    if argv is None:
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    if background:
        subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=False)
        return 0
    return subprocess.run(argv, env=env).returncode


class _Discard:
    def __call__(self, level, text):
        pass


@contextlib.contextmanager
def quiet():
    """Silence msg diagnostics (a command run with `2>/dev/null`)."""
    saved = list(msg._outputs)
    msg._outputs[:] = [_Discard()]
    try:
        yield
    finally:
        msg._outputs[:] = saved
