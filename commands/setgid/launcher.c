/*
 * pyfix set-gid launcher: the one compiled piece of pyfix.
 *
 * Postfix installs postdrop (and postqueue) set-gid "postdrop" so that every local user
 * can write the maildrop directory (postfix:postdrop 1730) and reach the public
 * sockets (postfix:postdrop 2710), while nothing else can.  The kernel ignores the
 * set-gid bit of a script, so pyfix builds this small program once per command and
 * installs it set-gid in $command_directory; it starts pyfix's Python module with the
 * group privilege it was given.
 *
 * Everything that decides what runs is compiled in (python -m pyfix.commands.setgid
 * install fills it in): the interpreter, the module, the program name and the default
 * configuration directory.  The user's argv[0] is ignored.  The interpreter runs
 * isolated (-I: no PYTHON* variables, no user site directory, no script or current
 * directory on the module path), and the kernel runs it in secure-execution mode
 * because its effective group differs from the real one, so the dynamic loader ignores
 * LD_* as well.  The Python side then does what Postfix's set-gid programs do: it
 * checks a non-default configuration directory against the default main.cf and
 * reduces the environment to import_environment.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PYFIX_PYTHON
#error "define PYFIX_PYTHON (the absolute path of the Python interpreter)"
#endif
#ifndef PYFIX_PROGNAME
#error "define PYFIX_PROGNAME (postdrop, postqueue, ...)"
#endif
#ifndef PYFIX_CONFIG_DIR
#define PYFIX_CONFIG_DIR "/etc/postfix"
#endif

static const char code[] =
    "import sys; from pyfix.commands.setgid import launch; "
    "sys.exit(launch(sys.argv))";

int     main(int argc, char **argv)
{
    char  **args;
    int     n;
    int     i;

    if (argc < 1)
        argc = 1;
    args = calloc((size_t) argc + 6, sizeof(*args));
    if (args == 0) {
        fprintf(stderr, "%s: fatal: out of memory\n", PYFIX_PROGNAME);
        return 1;
    }
    n = 0;
    args[n++] = (char *) PYFIX_PYTHON;
    args[n++] = (char *) "-I";
    args[n++] = (char *) "-c";
    args[n++] = (char *) code;
    args[n++] = (char *) PYFIX_PROGNAME;
    args[n++] = (char *) PYFIX_CONFIG_DIR;
    for (i = 1; i < argc; i++)
        args[n++] = argv[i];
    args[n] = 0;
    execv(PYFIX_PYTHON, args);
    fprintf(stderr, "%s: fatal: execv %s: %s\n", PYFIX_PROGNAME, PYFIX_PYTHON,
            strerror(errno));
    return 1;
}
