"""A command for pipe(8) tests: records what it was given and answers as told.

    pipe_recorder.py OUTDIR EXIT_CODE [OUTPUT|-] [SLEEP] -- args...

It writes OUTDIR/<time>-<pid>.json (argv, stdin as text, uid, gid, cwd, environment names) and
then prints OUTPUT (unless `-`; `\\n` is a newline), sleeps SLEEP seconds and exits with
EXIT_CODE (a negative one: killed by that signal).
"""

import json
import os
import sys
import time


def main():
    outdir, code = sys.argv[1], int(sys.argv[2])
    output = sys.argv[3] if len(sys.argv) > 3 else "-"
    sleep = float(sys.argv[4]) if len(sys.argv) > 4 else 0
    data = sys.stdin.buffer.read() if sleep == 0 else b""
    record = {"argv": sys.argv[5:], "stdin": data.decode("utf-8", "surrogateescape"),
              "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
              "cwd": os.getcwd(), "env": sorted(os.environ)}
    path = os.path.join(outdir, "%d-%d.json" % (time.time_ns(), os.getpid()))
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.rename(path + ".tmp", path)
    if output != "-":
        sys.stdout.write(output.replace("\\n", "\n"))
        sys.stdout.flush()
    if sleep:
        time.sleep(sleep)
    if code < 0:
        os.kill(os.getpid(), -code)
    sys.exit(code)


main()
