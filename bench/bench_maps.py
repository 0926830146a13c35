#!/usr/bin/env python3
"""Lookup tables, pyfix beside Debian's Postfix in one run: lookups per second per table
type, and the time to build a 100k-entry hash: table.

    .venv/bin/python bench/bench_maps.py [--keys N] [--entries N] [--build-entries N]

For each table type, one process answers N keys (half of them in the table):
  - postfix:  Debian's `/usr/sbin/postmap -q - type:table` with the keys on stdin;
  - pyfix:    pyfix's `postmap -q - type:table`, the same way;
  - pyfix-api: pyfix's Dict API in this process (dict_open + N lookups, flags as
              postmap -q uses them), which is what pyfix's daemons pay per lookup.
All three are end to end: opening the table, every lookup, and (for the commands)
process start and output. The indexed tables are built once by Debian's postmap and
read by all three. Ratios are pyfix / Postfix rates (above 1: pyfix is faster). Then
both postmaps build the same --build-entries hash: table from its source.
The pattern types (regexp, pcre, cidr, inline) are measured when pyfix has them.
"""

import argparse
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

POSTFIX_POSTMAP = "/usr/sbin/postmap"
PYFIX_POSTMAP = os.path.join(os.path.dirname(sys.executable), "postmap")
OLD = 946684800


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.utime(path, (OLD, OLD))


def have(module):
    return importlib.util.find_spec("pyfix.maps." + module) is not None


class Workload:
    """A table source and the keys to look up, for one table type."""

    def __init__(self, map_type, spec, keys, build_type=None):
        self.map_type = map_type
        self.spec = spec
        self.keys = keys
        self.build_type = build_type


def address_workloads(root, entries, nkeys):
    lines = ["user%d@example%d.com\tvalue-%d@relay.example\n" % (i, i % 97, i)
             for i in range(entries)]
    write(os.path.join(root, "table"), "".join(lines))
    rng = random.Random(1)
    keys = []
    for n in range(nkeys):
        i = rng.randrange(entries)
        keys.append("user%d@example%d.com" % (i, i % 97) if n % 2 == 0
                    else "nobody%d@example%d.com" % (i, i % 97))
    works = [Workload(t, "%s:%s/table" % (t, root), keys, build_type=t)
             for t in ("hash", "btree", "lmdb", "cdb")]
    works.append(Workload("texthash", "texthash:%s/table" % root, keys))
    if have("dict_inline"):
        items = ", ".join("user%d@example%d.com=v%d" % (i, i % 97, i) for i in range(50))
        works.append(Workload("inline", "inline:{%s}" % items, keys))
    return works


def pattern_workloads(root, nkeys):
    rng = random.Random(2)
    works = []
    rules = "".join("/^user%d@example[0-9]+\\.(com|net)$/ rule-%d\n" % (i, i)
                    for i in range(0, 60, 3))
    rules += "/^(postmaster|abuse)@/ role\n/\\.example\\.org$/ org\n"
    keys = ["user%d@example%d.com" % (rng.randrange(90), rng.randrange(9))
            for _ in range(nkeys)]
    for map_type, module in (("regexp", "dict_regexp"), ("pcre", "dict_pcre")):
        if have(module):
            write(os.path.join(root, map_type), rules)
            works.append(Workload(map_type, "%s:%s/%s" % (map_type, root, map_type), keys))
    if have("dict_cidr"):
        nets = "".join("10.%d.%d.0/24 net-%d\n" % (i // 256, i % 256, i) for i in range(1000))
        write(os.path.join(root, "cidr"), nets + "192.168.0.0/16 private\n")
        ips = ["10.%d.%d.%d" % (rng.randrange(8), rng.randrange(256), rng.randrange(256))
               for _ in range(nkeys)]
        works.append(Workload("cidr", "cidr:%s/cidr" % root, ips))
    return works


def run_postmap(program, root, spec, keys):
    """(seconds, output lines) of `postmap -q - spec` answering keys."""
    data = ("\n".join(keys) + "\n").encode()
    start = time.perf_counter()
    proc = subprocess.run([program, "-c", root, "-q", "-", spec], input=data,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit("%s failed: %s" % (program, proc.stderr.decode()[-500:]))
    return elapsed, proc.stdout.count(b"\n")


def run_api(spec, keys):
    """(seconds, found) of pyfix's Dict API: open the table, look up every key."""
    from pyfix.maps.dict import (FLAG_DUP_WARN, FLAG_FOLD_FIX, FLAG_LOCK,
                                 FLAG_UTF8_REQUEST, dict_open)
    start = time.perf_counter()
    table = dict_open(spec, os.O_RDONLY,
                      FLAG_DUP_WARN | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST | FLAG_LOCK)
    lookup = table.lookup
    found = 0
    for key in keys:
        if lookup(key) is not None:
            found += 1
    table.close()
    return time.perf_counter() - start, found


def best(runs, fn, *args):
    """The fastest of `runs` runs (each run's output count must agree)."""
    results = [fn(*args) for _ in range(runs)]
    counts = {count for _, count in results}
    if len(counts) != 1:
        raise SystemExit("runs disagree: %r" % results)
    return min(seconds for seconds, _ in results), counts.pop()


def measure(root, works, runs):
    print("%-9s %7s %12s %12s %12s %8s %8s" % ("type", "keys", "postfix/s", "pyfix/s",
                                             "pyfix-api/s", "cmd", "api"))
    for work in works:
        if work.build_type:
            subprocess.run([POSTFIX_POSTMAP, "-c", root, "%s:%s/table" % (work.build_type,
                                                                           root)],
                           check=True, stderr=subprocess.DEVNULL)
        n = len(work.keys)
        postfix_s, postfix_found = best(runs, run_postmap, POSTFIX_POSTMAP, root, work.spec,
                                        work.keys)
        pyfix_s, pyfix_found = best(runs, run_postmap, PYFIX_POSTMAP, root, work.spec,
                                    work.keys)
        api_s, api_found = best(runs, run_api, work.spec, work.keys)
        if not postfix_found == pyfix_found == api_found:
            raise SystemExit("%s: found %d / %d / %d keys" % (work.map_type, postfix_found,
                                                             pyfix_found, api_found))
        rates = [n / postfix_s, n / pyfix_s, n / api_s]
        print("%-9s %7d %12.0f %12.0f %12.0f %8.2f %8.2f"
              % (work.map_type, n, rates[0], rates[1], rates[2], rates[1] / rates[0],
                 rates[2] / rates[0]))


def measure_build(root, entries, runs):
    lines = "".join("user%d@example%d.com\tvalue-%d@relay.example\n" % (i, i % 97, i)
                    for i in range(entries))
    times = {}
    for label, program in (("postfix", POSTFIX_POSTMAP), ("pyfix", PYFIX_POSTMAP)):
        source = os.path.join(root, "build-%s" % label)
        write(source, lines)
        elapsed = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([program, "-c", root, "hash:" + source], check=True)
            elapsed.append(time.perf_counter() - start)
        times[label] = min(elapsed)
    print("build hash:%d entries: postfix %.2fs, pyfix %.2fs, pyfix/postfix time %.2f"
          % (entries, times["postfix"], times["pyfix"], times["pyfix"] / times["postfix"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--build-entries", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.access(POSTFIX_POSTMAP, os.X_OK):
        raise SystemExit("Debian's postmap is not installed")
    root = tempfile.mkdtemp(prefix="bench-maps-", dir="/tmp")
    try:
        write(os.path.join(root, "main.cf"), "")
        works = address_workloads(root, args.entries, args.keys)
        works += pattern_workloads(root, args.keys)
        measure(root, works, args.runs)
        measure_build(root, args.build_entries, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
