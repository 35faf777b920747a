#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Layers one way: lib < log < client, serve < cli (design.md).

Reads every `#include "..."` in include/ and src/, resolves it as the
compiler does (beside the file, then -Iinclude) and prints each one that a
layer may not make, as FILE:LINE: #include "..." (WHY). Exit status 1 if
any was printed. System headers (<...>) are not checked.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')

# Each layer, the directory that holds it, and what it may include
# (besides itself). include/pbx.h is libpbx's public header.
LAYERS = [
    ("api", "include", []),
    ("lib", "src/lib", ["api"]),
    ("log", "src/log", ["api"]),
    ("client", "src/client", ["api", "log"]),
    ("serve", "src/serve", ["api", "log"]),
    ("cli", "src/cli", ["api", "log", "client", "serve"]),
]


def layer_of(rel):
    for name, folder, _ in LAYERS:
        if rel == folder or rel.startswith(folder + "/"):
            return name
    return None


def layer_of_folder(name):
    return next(folder for n, folder, _ in LAYERS if n == name)


def sources():
    for _, folder, _ in LAYERS:
        for here, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(here, f), ROOT)


def resolve(rel, target):
    """The included file relative to ROOT, or None if it does not exist."""
    for base in (os.path.dirname(rel), "include"):
        path = os.path.normpath(os.path.join(base, target))
        if os.path.isfile(os.path.join(ROOT, path)):
            return path
    return None


def main():
    allowed = {name: set(deps) | {name} for name, _, deps in LAYERS}
    bad = 0
    for rel in sorted(sources()):
        me = layer_of(rel)
        with open(os.path.join(ROOT, rel), errors="replace") as f:
            for n, line in enumerate(f, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                path = resolve(rel, m.group(1))
                if path is None:
                    why = "no such file beside it or in include/"
                else:
                    them = layer_of(path)
                    if them in allowed[me]:
                        continue
                    folders = [folder for name, folder, _ in LAYERS
                               if name in allowed[me]]
                    why = (f"{layer_of_folder(me)} may include only "
                           f"{', '.join(folders)}")
                print(f'{rel}:{n}: #include "{m.group(1)}" ({why})')
                bad += 1
    if bad:
        print(f"lint: {bad} include(s) against the layers "
              "(lib < log < client, serve < cli)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
