# SPDX-License-Identifier: MIT
"""The command line: help, version, usage errors (golden/usage.txt) and the
runtime failures with their exact one-line messages and exit status 1."""
import os
import re
import shlex
import socket
import time

from harness import GOLDEN, Skip, base_env, check, eq, match, need_tool, short, test


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


@test(params=[("v4", "127.0.0.1:0"), ("v6", "[::1]:0"), ("name", "localhost:0"),
              ("no-host", ":80")])
def test_connect_address_needs_host_and_port(t, text):
    # Port 0 is "any port" to bind: nothing answers a call to it, so it is a
    # usage error before any socket is made, not a refused connection.
    r = t.run_pbx(["connect", text], stdin=None)
    reason = "host is missing" if text.startswith(":") else "port 0 cannot be called"
    eq(r.err_lines(), [f"pbx: connect: bad address '{text}': {reason}"], "stderr")
    eq((r.rc, r.out), (2, b""), "exit status and stdout")


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


# ---------------------------------------------------------------------------
# Numeric hosts, one rule: a dotted quad (four decimals 0-255, no leading
# zeros) or a bracketed IPv6 address; any other number is refused (exit 2)
# before a resolver could read it. glibc's getaddrinfo falls back to
# inet_aton for names, which reads 127.1, 0177.0.0.1, 0x7f.0.0.1,
# 0x7f000001 and 2130706433 all as 127.0.0.1.
# ---------------------------------------------------------------------------

DOTTED = "is not a dotted-quad IPv4 address (four decimals 0-255, no leading zeros)"
BAD_V6 = "is not a valid IPv6 address"
BRACKETS = "is IPv6 and must be in brackets"

NOT_DOTTED = ["256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "0x7f.1", "1", "127.1",
              "0177.0.0.1", "0x7f000001", "0x7f.0.0.1", "0X7F.0.0.1", "2130706433",
              "4294967295", "00", "1.2.3.4.", "1..2"]
# Bracketed: an RFC 4291 address of exactly 128 bits, or nothing.
NOT_V6 = [":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
          "1:2:3:4:5:6:7:1.2.3.4", "12345::1", "::ffff:0x7f.0.0.1", "::ffff:127.1",
          "::ffff:01.2.3.4", "fe80::1%", "fe80::1%nosuchif0", "127.0.0.1", "127.1"]


def address_places():
    """Every argument that takes an address: (label, argv with {} for the
    text, what the message calls it, whether a port is needed)."""
    return [("serve", ["serve", "{}", "hello"], "address", True),
            ("connect", ["connect", "{}"], "address", True),
            ("connect-source", ["connect", "--source", "{}", "127.0.0.1:1"], "source", False),
            ("connect-s", ["connect", "-s", "{}", "127.0.0.1:1"], "source", False),
            ("bench", ["bench", "{}"], "address", True),
            ("bench-source", ["bench", "--source", "{}", "127.0.0.1:1"], "source", False)]


def refused_host_cases(only=None):
    """(label, argv, the one stderr line) for every place (or only one) and
    bad host."""
    cases = []
    for place, argv, what, port in address_places():
        if only is not None and place != only:
            continue
        cmd = argv[0]
        forms = [(h, h, DOTTED) for h in NOT_DOTTED]
        forms += [(f"[{h}]", h, BAD_V6) for h in NOT_V6]
        if port:  # without a port, the text splits at its last ':'
            forms.append(("::ffff:127.0.0.1", "::ffff:127.0.0.1", BRACKETS))
        for text, host, reason in forms:
            if port:
                text += ":0" if cmd == "serve" else ":80"
            args = [text if a == "{}" else a for a in argv]
            line = f"pbx: {cmd}: bad {what} '{text}': host '{host}' {reason}"
            cases.append((f"{place}-{text}", args, line))
    return cases


@test(params=refused_host_cases())
def test_numeric_host_refused(t, args, line):
    r = t.run_pbx(args, stdin=None)
    eq(r.err_lines(), [line], "stderr")
    eq(r.out, b"", "stdout")
    eq(r.rc, 2, "exit status")


# What a resolver touches (glibc, static or not): the NSS and resolver
# files, nscd's socket, the netlink query of AI_ADDRCONFIG and DNS on 53.
RESOLVER_TRACES = ("/etc/hosts", "/etc/nsswitch.conf", "/etc/resolv.conf", "/etc/host.conf",
                   "/etc/gai.conf", "/nscd/socket", "AF_NETLINK", "htons(53)")


def strace_run(t, args, prefix=(), timeout=20):
    """Run pbx ARGS under strace -f (file and network calls); returns the
    result and the trace lines."""
    strace = need_tool("strace", "strace")
    log = os.path.join(t.tmpdir(), f"strace.{len(t.procs)}")
    # LeakSanitizer cannot run under ptrace; the other checks still do.
    asan = os.environ.get("ASAN_OPTIONS")
    env = base_env(ASAN_OPTIONS=(asan + ":" if asan else "") + "detect_leaks=0")
    r = t.run_pbx(args, stdin=None, timeout=timeout, env=env,
                  prefix=list(prefix) + [strace, "-f", "-qq", "-o", log,
                                         "-e", "trace=%file,%network"])
    with open(log) as f:
        trace = f.read().splitlines()
    check(any("execve(" in l for l in trace), f"strace wrote no execve line: {trace[:3]}")
    return r, trace


@test(params=[place for place, _, _, _ in address_places()], timeout=120)
def test_numeric_host_never_resolved(t, place):
    # The proof that no resolver was asked: under strace, pbx opens none of
    # the resolver's files, asks no netlink, dials no port 53, and binds,
    # listens or connects nothing. test_digit_names_resolved shows that the
    # same trace does see a resolver at work.
    for label, args, line in refused_host_cases(place):
        r, trace = strace_run(t, args)
        eq((r.rc, r.err_lines()), (2, [line]), f"pbx {' '.join(args)}")
        seen = [l for l in trace if any(s in l for s in RESOLVER_TRACES)]
        check(not seen, f"pbx {' '.join(args)} consulted the resolver: {short(seen)}")
        calls = [l for l in trace if re.search(r"\b(bind|listen|connect)\(", l)]
        check(not calls, f"pbx {' '.join(args)} made socket calls: {short(calls)}")


@test(params=[("connect-3com", ["connect", "3com:80"], "3com"),
              ("serve-1password.com", ["serve", "1password.com:0", "hello"], "1password.com"),
              ("bench-0xg", ["bench", "0xg:80"], "0xg"),
              ("connect-source-1e3", ["connect", "--source", "1e3", "127.0.0.1:1"], "1e3"),
              ("connect-0x7f.example", ["connect", "0x7f.example:80"], "0x7f.example")],
      timeout=60)
def test_digit_names_resolved(t, args, name):
    # Names that start with digits or 0x but have letters beyond hex are
    # names: the resolver is asked (here in a namespace whose DNS server
    # does not answer) and its failure is a runtime error, exit 1.
    ns = t.netns(hosts=HOSTS, resolv=NO_DNS)
    r, trace = strace_run(t, args, prefix=ns.prefix, timeout=30)
    lines = r.err_lines()
    eq(len(lines), 1, f"stderr lines ({r.err!r})")
    match(rf"pbx: {args[0]}: resolve {re.escape(name)}: \S.*", lines[0], "stderr")
    eq(r.rc, 1, "exit status")
    check(any("/etc/hosts" in l for l in trace),
          f"the trace shows no look-up in /etc/hosts for {name}: {short(trace[-5:])}")


@test(params=[("v4-mapped", "[::ffff:127.0.0.1]", "127.0.0.1"), ("ipv4", "127.0.0.1", "127.0.0.1")])
def test_numeric_host_accepted(t, host, shown):
    # The forms the rule keeps: a dotted quad, and IPv6 in brackets (a
    # v4-mapped address is dialled as the IPv4 address it carries).
    port = refused_port(t)
    r = t.run_pbx(["connect", f"{host}:{port}"], stdin=None)
    eq(r.err_lines(), [f"pbx: connect: dial {shown}:{port}: Connection refused"], "stderr")
    eq(r.rc, 1, "exit status")


@test()
def test_scope_id_accepted(t):
    # A scope is an interface's name, as documented: [fe80::1%lo] parses and
    # reaches bind (lo has no fe80::1, so the kernel refuses the address).
    r = t.run_pbx(["serve", "[fe80::1%lo]:0", "hello"], stdin=None)
    eq(r.err_lines(), ["pbx: serve: listen [fe80::1%lo]:0: Cannot assign requested address"],
       "stderr")
    eq(r.rc, 1, "exit status")


# ---------------------------------------------------------------------------
# Seconds, one rule: DIGITS or DIGITS.DIGITS, nothing strtod alone would add
# (sign, space, hex float, exponent, inf, nan), no unit, within the range.
# ---------------------------------------------------------------------------

BAD_SECONDS = ["0x2", "inf", "nan", "1e3", "-1", "+2", " 2", "2s", "", ".5", "2.", "INF",
               "infinity", "NaN", "0x1p1", "1e-3", "2 ", "1,5", "1.2.3", "0..5", "86400.001",
               "86401", "99999999999999999999", "1e99", "10q", "0", "0.0", "00"]
ZEROS = ("0", "0.0", "00")
POSITIVE = "expected seconds, more than 0 and at most 86400"
SECONDS_PLACES = [("connect-timeout", ["connect", "--connect-timeout", "{}", "127.0.0.1:1"],
                   "connect-timeout", POSITIVE),
                  ("t", ["connect", "-t", "{}", "127.0.0.1:1"], "connect-timeout", POSITIVE),
                  ("duration", ["bench", "-d", "{}", "127.0.0.1:1"], "duration", POSITIVE),
                  ("timeout", ["bench", "--timeout", "{}", "127.0.0.1:1"], "timeout", POSITIVE),
                  ("warmup", ["bench", "--warmup", "{}", "127.0.0.1:1"], "warmup",
                   "expected seconds, from 0 to 86400")]


def bad_seconds_cases():
    cases = []
    for label, argv, what, expected in SECONDS_PLACES:
        for v in BAD_SECONDS:
            if what == "warmup" and v in ZEROS:
                continue  # --warmup takes 0
            args = [v if a == "{}" else a for a in argv]
            cases.append((f"{label}={v!r}", args, f"pbx: {argv[0]}: bad {what} '{v}': {expected}"))
    return cases


@test(params=bad_seconds_cases())
def test_seconds_refused(t, args, line):
    r = t.run_pbx(args, stdin=None)
    eq(r.err_lines(), [line], "stderr")
    eq(r.out, b"", "stdout")
    eq(r.rc, 2, "exit status")


@test(params=["0.5", "2", "02", "2.250", "0.0001"])
def test_connect_timeout_decimals_accepted(t, value):
    port = refused_port(t)
    r = t.run_pbx(["connect", "--connect-timeout", value, f"127.0.0.1:{port}"], stdin=None)
    want = [f"pbx: connect: dial 127.0.0.1:{port}: Connection refused"]
    # 0.0001 s is 1 ms (rounded up, never "no timeout"); it may expire first.
    if value == "0.0001" and r.err_lines() != want:
        want = [f"pbx: connect: dial 127.0.0.1:{port}: Connection timed out"]
    eq(r.err_lines(), want, "stderr")
    eq(r.rc, 1, "exit status")


@test()
def test_bench_seconds_decimals_accepted(t):
    srv = t.serve("127.0.0.1:0", ["hello"])
    r = t.run_pbx(["bench", "--json", "-d", "0.5", "--warmup", "0.000", "--timeout", "2",
                   "-c", "2", f"127.0.0.1:{srv.port}"], stdin=None, timeout=20)
    eq((r.rc, r.err), (0, ""), "exit status and stderr")
    check(r.out.startswith(b"{"), f"no JSON report: {r.out[:80]!r}")
    srv.stop()
