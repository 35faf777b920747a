#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run the pbx end-to-end tests: tests/e2e/test_*.py against --pbx PATH.

Prints one line per test: "PASS name", "FAIL name: why" (details follow on
indented lines) or "SKIP name: why". Exit status 1 if any test failed.
FILTER arguments select the tests whose name contains one of them.

Each test runs in a thread with a watchdog; on expiry its processes (each
started in its own process group) are killed and the test fails. Tests run
in parallel (-j), except those marked exclusive, which run alone at the end.
"""
import argparse
import glob
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def load_tests():
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        importlib.import_module(os.path.basename(path)[:-3])
    return list(harness.REGISTRY)


class Outcome:
    def __init__(self, status, why="", details=()):
        self.status = status
        self.why = why
        self.details = list(details)


def execute(spec, t):
    try:
        spec.fn(t, *spec.args)
        outcome = Outcome("PASS")
    except harness.Skip as e:
        outcome = Outcome("SKIP", str(e))
    except harness.Failure as e:
        lines = str(e).splitlines() or ["failed"]
        outcome = Outcome("FAIL", lines[0], lines[1:] + t.details())
    except Exception as e:  # a bug in the test or an unexpected error
        tb = traceback.format_exc().rstrip().splitlines()
        outcome = Outcome("FAIL", f"{type(e).__name__}: {e}".splitlines()[0],
                          tb[-6:] + t.details())
    try:
        t.cleanup()
    except Exception:
        pass
    reports = t.sanitizer_reports()
    if reports and outcome.status != "FAIL":
        outcome = Outcome("FAIL", "sanitizer report on stderr: " + reports[0],
                          reports[1:] + t.details())
    return outcome


def format_outcome(name, o):
    if o.status == "PASS":
        return f"PASS {name}"
    text = f"{o.status} {name}: {o.why}"
    for d in o.details:
        text += "\n    " + d
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pbx", required=True, help="path of the pbx binary under test")
    ap.add_argument("-j", "--jobs", type=int, default=4, help="tests run at once")
    ap.add_argument("--timeout", type=float, default=None,
                    help="watchdog seconds per test (default: each test's own)")
    ap.add_argument("--list", action="store_true", help="list test names and exit")
    ap.add_argument("--durations", type=int, default=0, metavar="N",
                    help="print the N slowest tests to stderr at the end")
    ap.add_argument("filter", nargs="*")
    args = ap.parse_args()

    pbx = os.path.abspath(args.pbx)
    tests = load_tests()
    if args.filter:
        tests = [s for s in tests if any(f in s.name for f in args.filter)]
    if args.list:
        for s in tests:
            print(s.name)
        return 0
    if not tests:
        print("FAIL e2e: no test matches the filter")
        return 1
    if not (os.path.isfile(pbx) and os.access(pbx, os.X_OK)):
        print(f"FAIL e2e: no pbx binary at {pbx} (build it first: make asan)")
        return 1
    # Test a private copy, so a rebuild during the run cannot swap binaries.
    workdir = tempfile.mkdtemp(prefix="pbx-e2e-bin-")
    harness.PBX = os.path.join(workdir, "pbx")
    shutil.copy2(pbx, harness.PBX)
    try:
        if subprocess.run(["setpriv", "--pdeathsig", "KILL", "--", "true"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            harness.LAUNCH_PREFIX[:] = ["setpriv", "--pdeathsig", "KILL", "--"]
    except OSError:
        pass
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        return run_all(args, tests)
    finally:
        for t in harness.ALL_TESTS:
            t.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)


def run_all(args, tests):

    parallel = [s for s in tests if not s.exclusive]
    exclusive = [s for s in tests if s.exclusive]
    results = {}
    order = [s.name for s in parallel + exclusive]
    printed = 0
    lock = threading.Lock()

    def flush():
        nonlocal printed
        while printed < len(order) and order[printed] in results:
            print(format_outcome(order[printed], results[order[printed]]), flush=True)
            printed += 1

    durations = {}

    def worker(spec, t, box):
        start = time.monotonic()
        box.append(execute(spec, t))
        durations[spec.name] = time.monotonic() - start

    def run_batch(batch, jobs):
        pending = list(batch)
        running = []  # (spec, t, thread, box, deadline)
        while pending or running:
            while pending and len(running) < jobs:
                spec = pending.pop(0)
                t = harness.T(spec.name)
                box = []
                th = threading.Thread(target=worker, args=(spec, t, box), daemon=True)
                th.start()
                timeout = args.timeout or spec.timeout
                running.append((spec, t, th, box, time.monotonic() + timeout, timeout))
            time.sleep(0.01)
            still = []
            for item in running:
                spec, t, th, box, deadline, timeout = item
                if not th.is_alive():
                    th.join()
                    outcome = box[0] if box else Outcome("FAIL", "test thread ended"
                                                         " without a result")
                elif time.monotonic() > deadline:
                    details = t.details()
                    t.kill_all()
                    th.join(5)
                    outcome = Outcome("FAIL", f"watchdog: still running after {timeout:g} s;"
                                      " its processes were killed", details)
                else:
                    still.append(item)
                    continue
                with lock:
                    results[spec.name] = outcome
                    flush()
            running = still

    started = time.monotonic()
    run_batch(parallel, max(1, args.jobs))
    run_batch(exclusive, 1)
    flush()
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for o in results.values():
        counts[o.status] += 1
    print(f"# e2e: {counts['PASS']} pass, {counts['FAIL']} fail, {counts['SKIP']} skip"
          f" in {time.monotonic() - started:.1f} s", file=sys.stderr)
    if args.durations:
        slow = sorted(durations.items(), key=lambda kv: -kv[1])[:args.durations]
        for name, secs in slow:
            print(f"# {secs:6.2f} s  {name}", file=sys.stderr)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
