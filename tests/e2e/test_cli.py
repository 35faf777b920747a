# SPDX-License-Identifier: MIT
"""The command line: help, version, usage errors (golden/usage.txt) and the
runtime failures with their exact one-line messages and exit status 1."""
import os
import re
import shlex
import socket
import time

from harness import GOLDEN, Skip, check, eq, match, test


def load_golden(name):
    """Parse a golden transcript: [(label, args, stderr_lines, status)]."""
    cases = []
    with open(os.path.join(GOLDEN, name)) as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            i += 1
            continue
        words = shlex.split(line[2:])
        assert words[0] == "pbx", line
        i += 1
        err = []
        while not lines[i].startswith("? "):
            err.append(lines[i])
            i += 1
        status = int(lines[i][2:])
        cases.append((line[6:], words[1:], err, status))
        i += 1
    return cases


USAGE = load_golden("usage.txt")


@test(params=[(label, args, err, status) for label, args, err, status in USAGE])
def test_usage(t, args, err, status):
    r = t.run_pbx(args)
    eq(r.err_lines(), err, "stderr")
    eq(r.out, b"", "stdout")
    eq(r.rc, status, "exit status")
    check(r.err.endswith("\n"), "stderr does not end with a newline")


def help_text(t, args):
    r = t.run_pbx(args)
    eq(r.rc, 0, "exit status")
    eq(r.err, "", "stderr")
    check(r.out.strip() != b"", "usage text is empty")
    return r.out.decode(errors="replace")


@test()
def test_help(t):
    long = help_text(t, ["--help"])
    for word in ("serve", "connect"):
        check(re.search(r"\b" + word + r"\b", long), f"--help does not mention '{word}'")
    eq(help_text(t, ["-h"]), long, "pbx -h text (same as --help)")


@test()
def test_version(t):
    with open(os.path.join(GOLDEN, "version.txt"), "rb") as f:
        want = f.read()
    r = t.run_pbx(["--version"])
    eq(r.out, want, "stdout")
    eq(r.err, "", "stderr")
    eq(r.rc, 0, "exit status")


@test()
def test_no_args(t):
    r = t.run_pbx([])
    eq(r.rc, 2, "exit status")
    eq(r.out, b"", "stdout")
    for word in ("serve", "connect"):
        check(re.search(r"\b" + word + r"\b", r.err),
              f"usage on stderr does not mention '{word}': {r.err[:200]!r}")


SERVE_OPTIONS = ["-m", "--model", "serial", "fork", "event", "-c", "--max-conns", "-b",
                 "--backlog", "-w", "--workers",
                 "-v", "--verbose", "-q", "--quiet", "--trace", "-h", "--help",
                 "hello", "echo", "discard", "PROGRAM"]
CONNECT_OPTIONS = ["-s", "--source", "-t", "--connect-timeout", "-v", "--verbose",
                   "-q", "--quiet", "--trace", "-h", "--help", "PROGRAM"]
BENCH_OPTIONS = ["-c", "--connections", "-d", "--duration", "-n", "--total", "--warmup",
                 "--send", "--expect-bytes", "--expect", "--rounds", "--source", "--reset",
                 "--hold", "--timeout", "--json", "-h", "--help"]


@test(params=[("serve", "serve", SERVE_OPTIONS), ("connect", "connect", CONNECT_OPTIONS),
              ("bench", "bench", BENCH_OPTIONS)])
def test_command_help(t, cmd, words):
    text = help_text(t, [cmd, "--help"])
    missing = [w for w in words
               if not re.search(r"(?<![\w-])" + re.escape(w) + r"(?![\w-])", text)]
    check(not missing, f"pbx {cmd} --help does not list: {' '.join(missing)}")
    eq(help_text(t, [cmd, "-h"]), text, f"pbx {cmd} -h text (same as --help)")


@test(params=[("serve", "serve"), ("connect", "connect")])
def test_missing_option_argument(t, cmd):
    # The contract gives no text; it is a usage error: one line, status 2.
    opt = "-m" if cmd == "serve" else "-t"
    r = t.run_pbx([cmd, opt])
    eq(r.rc, 2, "exit status")
    eq(r.out, b"", "stdout")
    eq(len(r.err_lines()), 1, f"stderr lines ({r.err!r})")
    check(r.err.startswith(f"pbx: {cmd}: "), f"stderr {r.err!r} lacks 'pbx: {cmd}: '")


@test(params=[("c1", ["-c", "1"], None), ("c1000000", ["--max-conns", "1000000"], None),
              ("b1", ["-b", "1"], 1), ("b65535", ["--backlog", "65535"], 65535),
              ("default", [], 4096)])
def test_serve_option_bounds_accepted(t, opts, backlog):
    srv = t.serve("127.0.0.1:0", ["hello"], list(opts) + ["--trace"])
    if backlog is not None:
        lines = srv.err_lines()[:srv.ready_index]
        fd = None
        for line in lines:
            m = re.fullmatch(r"pbx: trace: socket\(AF_INET, SOCK_STREAM\) = (\d+)", line)
            if m:
                fd = m.group(1)
        check(fd is not None, f"no socket() trace line before listening: {lines}")
        want = f"pbx: trace: listen({fd}, {backlog})"
        check(want in lines, f"trace lacks {want!r}: {lines}")
    srv.stop()


def refused_port(t, host="127.0.0.1"):
    """A port with a bound socket that does not listen: connect is refused."""
    s = t.listener(host, listen=False)
    return s.getsockname()[1]


@test(params=[("86400", "86400"), ("0.001", "0.001"), ("1.5", "1.5")])
def test_connect_timeout_bounds_accepted(t, value):
    port = refused_port(t)
    r = t.run_pbx(["connect", "-t", value, f"127.0.0.1:{port}"], stdin=None)
    # 0.001 s may expire before the refusal comes back; both are runtime errors.
    want = [f"pbx: connect: dial 127.0.0.1:{port}: Connection refused"]
    if value == "0.001" and r.err_lines() != want:
        want = [f"pbx: connect: dial 127.0.0.1:{port}: Connection timed out"]
    eq(r.err_lines(), want, "stderr")
    eq(r.rc, 1, "exit status")


# ---------------------------------------------------------------------------
# Runtime failures: exit 1, one line
# ---------------------------------------------------------------------------

@test(params=[("ipv4", "127.0.0.1"), ("ipv6", "::1")])
def test_serve_address_in_use(t, host):
    busy = t.listener(host)
    port = busy.getsockname()[1]
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    r = t.run_pbx(["serve", addr, "hello"], stdin=None)
    eq(r.err_lines(), [f"pbx: serve: listen {addr}: Address already in use"], "stderr")
    eq(r.out, b"", "stdout")
    eq(r.rc, 1, "exit status")


@test(params=[("ipv4", "127.0.0.1"), ("ipv6", "::1")])
def test_connect_refused(t, host):
    port = refused_port(t, host)
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    r = t.run_pbx(["connect", addr], stdin=b"x")
    eq(r.err_lines(), [f"pbx: connect: dial {addr}: Connection refused"], "stderr")
    eq(r.out, b"", "stdout")
    eq(r.rc, 1, "exit status")


@test(exclusive=True)
def test_connect_timeout_loopback(t):
    # A listener whose accept queue is full drops new SYNs: the connect hangs
    # on loopback, without a packet leaving the machine.
    lsock = t.listener("127.0.0.1", backlog=0)
    port = lsock.getsockname()[1]
    filler = []
    for _ in range(4):
        s = socket.socket()
        t.socks.append(s)
        s.settimeout(0.3)
        try:
            s.connect(("127.0.0.1", port))
            filler.append(s)
        except (socket.timeout, OSError):
            break
    else:
        raise Skip("a listen(0) socket kept accepting connections: cannot make a"
                   " connect hang on loopback here")
    start = time.monotonic()
    r = t.run_pbx(["connect", "-t", "0.5", f"127.0.0.1:{port}"], stdin=None, timeout=10)
    elapsed = time.monotonic() - start
    eq(r.err_lines(), [f"pbx: connect: dial 127.0.0.1:{port}: Connection timed out"], "stderr")
    eq(r.rc, 1, "exit status")
    check(elapsed < 3.0, f"--connect-timeout 0.5 took {elapsed:.2f} s (limit 3 s)")
    check(elapsed >= 0.45, f"gave up after {elapsed:.2f} s, before the 0.5 s timeout")


@test(exclusive=True)
def test_connect_timeout_blackhole(t):
    # The contract's own example, 10.255.255.1, only inside a private network
    # namespace whose one link (a veth pair) leads nowhere: ARP for the
    # address is never answered, so the SYN never even leaves the namespace.
    ns = t.netns(setup="ip link add pbxv0 type veth peer name pbxv1\n"
                       "ip link set pbxv0 up\nip link set pbxv1 up\n"
                       "ip addr add 10.255.255.2/24 dev pbxv0")
    start = time.monotonic()
    r = t.run_pbx(["connect", "--connect-timeout", "0.5", "10.255.255.1:80"], stdin=None,
                  prefix=ns.prefix, timeout=10)
    elapsed = time.monotonic() - start
    eq(r.err_lines(), ["pbx: connect: dial 10.255.255.1:80: Connection timed out"], "stderr")
    eq(r.rc, 1, "exit status")
    check(elapsed < 3.0, f"--connect-timeout 0.5 took {elapsed:.2f} s (limit 3 s)")


@test()
def test_connect_bad_source(t):
    try:
        with socket.socket() as s:
            s.bind(("192.0.2.1", 0))
        raise Skip("192.0.2.1 is a local address on this machine")
    except OSError:
        pass
    srv = t.listener("127.0.0.1")
    port = srv.getsockname()[1]
    r = t.run_pbx(["connect", "-s", "192.0.2.1", f"127.0.0.1:{port}"], stdin=None)
    eq(r.err_lines(), ["pbx: connect: bind 192.0.2.1:0: Cannot assign requested address"],
       "stderr")
    eq(r.rc, 1, "exit status")


# Name resolution only inside a network namespace with loopback only, so no
# DNS query can leave the machine.
NO_DNS = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"


@test(params=["connect", "serve"])
def test_unknown_host(t, cmd):
    ns = t.netns(hosts=HOSTS, resolv=NO_DNS)
    args = ["connect", "no.such.host.invalid:80"] if cmd == "connect" else \
        ["serve", "no.such.host.invalid:0", "hello"]
    r = t.run_pbx(args, stdin=None, prefix=ns.prefix, timeout=15)
    lines = r.err_lines()
    eq(len(lines), 1, f"stderr lines ({r.err!r})")
    m = match(rf"pbx: {cmd}: resolve no\.such\.host\.invalid: (.+)", lines[0], "stderr")
    check(m.group(1).strip() and not m.group(1).startswith("Success"),
          f"resolver text {m.group(1)!r}")
    eq(r.rc, 1, "exit status")
    eq(r.out, b"", "stdout")


@test()
def test_connect_missing_program(t):
    lsock = t.listener("127.0.0.1")
    port = lsock.getsockname()[1]
    r = t.run_pbx(["connect", f"127.0.0.1:{port}", "--", "nosuchprog"], stdin=None)
    eq(r.err_lines(), ["pbx: connect: run nosuchprog: No such file or directory"], "stderr")
    eq(r.rc, 1, "exit status")
    eq(r.out, b"", "stdout")


@test()
def test_serve_quiet_errors_only(t):
    # -q: a runtime error is still reported.
    busy = t.listener("127.0.0.1")
    port = busy.getsockname()[1]
    r = t.run_pbx(["serve", "-q", f"127.0.0.1:{port}"], stdin=None)
    eq(r.err_lines(), [f"pbx: serve: listen 127.0.0.1:{port}: Address already in use"],
       "stderr")
    eq(r.rc, 1, "exit status")


@test()
def test_connect_quiet_errors_only(t):
    port = refused_port(t)
    r = t.run_pbx(["connect", "-q", f"127.0.0.1:{port}"], stdin=None)
    eq(r.err_lines(), [f"pbx: connect: dial 127.0.0.1:{port}: Connection refused"], "stderr")
    eq(r.rc, 1, "exit status")
