#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run every test suite and print one closing line: "N passed, N failed".

Suites print one line per test: "PASS name", "FAIL name: why" or
"SKIP name: why". A suite that dies or exits non-zero without a FAIL line
counts as one failure. With CI=true a skipped test counts as failed:
CI installs every tool the tests use, so nothing may be skipped there.
"""
import argparse
import glob
import os
import subprocess
import sys

SUITE_TIMEOUT = 600


def run_suite(name, argv, counts):
    print(f"== {name}", flush=True)
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=SUITE_TIMEOUT, text=True, errors="replace")
        out, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code = "timeout"
    seen_fail = False
    for line in out.splitlines():
        word = line.split(" ", 1)[0]
        if word in ("PASS", "FAIL", "SKIP"):
            print(line, flush=True)
        elif line.strip():
            print("   " + line, flush=True)
        if word == "PASS":
            counts["passed"] += 1
        elif word == "FAIL":
            counts["failed"] += 1
            seen_fail = True
        elif word == "SKIP":
            counts["skipped"] += 1
    if code != 0 and not seen_fail:
        print(f"FAIL {name}: suite ended with status {code}", flush=True)
        counts["failed"] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", choices=["unit", "e2e"], default=None)
    ap.add_argument("filter", nargs="*", help="e2e test name substrings")
    args = ap.parse_args()
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    here = os.path.dirname(os.path.abspath(__file__))
    if args.only in (None, "unit"):
        units = sorted(glob.glob(os.path.join(args.build, "asan", "unit", "*_test")))
        if not units:
            print("FAIL unit: no unit test binaries were built")
            counts["failed"] += 1
        for exe in units:
            run_suite(os.path.basename(exe), [exe], counts)
    if args.only in (None, "e2e"):
        # Under the sanitizers first; then the binary `make` builds and
        # users run (linked statically by default, without sanitizers).
        for suite, pbx in (("e2e", ("asan", "pbx")), ("e2e release", ("pbx",))):
            pbx = os.path.abspath(os.path.join(args.build, *pbx))
            run_suite(suite, [sys.executable,
                              os.path.join(here, "e2e", "run.py"),
                              "--pbx", pbx] + args.filter, counts)
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if ci and counts["skipped"]:
        print(f"CI: {counts['skipped']} skipped test(s) count as failures")
        counts["failed"] += counts["skipped"]
        counts["skipped"] = 0
    line = f"{counts['passed']} passed, {counts['failed']} failed"
    if counts["skipped"]:
        line += f", {counts['skipped']} skipped"
    print(line)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
