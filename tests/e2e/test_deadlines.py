# SPDX-License-Identifier: MIT
"""Deadlines: idle and total timeouts for built-in handlers and programs
under every model, programs stopped with SIGTERM then SIGKILL and reaped,
keepalive and TCP_USER_TIMEOUT as the caller's socket carries them, and
the default options holding up against silent callers."""
import os
import socket
import time

from harness import PY, Failure, check, eq, exchange, match, recv_exact, test, wait_until

MODELS = ["event", "serial", "fork"]


def closed_after(s, limit):
    """Seconds until the server closes s (EOF or reset), at most limit."""
    start = time.monotonic()
    s.settimeout(limit)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise Failure(f"the server did not close the call within {limit} s")
    return time.monotonic() - start


def ping(s, data):
    """Send data and read as much back, keeping the call open."""
    s.sendall(data)
    return recv_exact(s, len(data), 5, "echo")


def end_lines(srv):
    return [l for l in srv.err_lines() if l.startswith("pbx: end ")]


def zombies_of(pid):
    """Children of pid that are zombies."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] == "Z":
            out.append(int(d))
    return out


@test(params=MODELS)
def test_idle_caller_closed(t, model):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-v", "-m", model, "--idle-timeout", "1"])
    s = t.dial("127.0.0.1", srv.port)
    took = closed_after(s, 4)
    check(0.9 <= took <= 2.0, f"a silent caller was closed after {took:.2f} s "
          "(idle timeout 1 s: expected 1 to 2 s)")
    wait_until(lambda: end_lines(srv), 3)
    match(r"pbx: end remote=127\.0\.0\.1:\d+ in=0 out=0 ms=\d+ end=idle",
          end_lines(srv)[0], "end line of an idle call")
    srv.stop()


@test(params=MODELS)
def test_activity_keeps_a_call(t, model):
    # A byte every 0.4 s is never idle for 1 s: the call outlives 2.5 s.
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model, "--idle-timeout", "1"])
    s = t.dial("127.0.0.1", srv.port)
    start = time.monotonic()
    while time.monotonic() - start < 2.5:
        eq(ping(s, b"x"), b"x", "echo while active")
        time.sleep(0.4)
    srv.stop()


@test(params=MODELS)
def test_slow_caller_cut_by_total_timeout(t, model):
    # Slow loris: a byte a second is never idle, so only --timeout ends it.
    srv = t.serve("127.0.0.1:0", ["echo"], ["-v", "-m", model, "--timeout", "2"])
    s = t.dial("127.0.0.1", srv.port)
    start = time.monotonic()
    s.settimeout(0.5)
    closed = None
    while time.monotonic() - start < 5:
        try:
            s.sendall(b".")
            if s.recv(16) == b"":
                closed = time.monotonic() - start
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed = time.monotonic() - start
            break
        time.sleep(0.5)
    check(closed is not None and 1.9 <= closed <= 3.0,
          f"slow caller ended after {closed} s (total timeout 2 s)")
    wait_until(lambda: end_lines(srv), 3)
    match(r"pbx: end remote=\S+ in=\d+ out=\d+ ms=\d+ end=timeout",
          end_lines(srv)[0], "end line of an overdue call")
    srv.stop()


@test(params=MODELS)
def test_idle_program_stopped(t, model):
    # cat moves no byte: past the idle timeout it gets SIGTERM and dies.
    srv = t.serve("127.0.0.1:0", ["--", "cat"],
                  ["-v", "-m", model, "--idle-timeout", "1"])
    s = t.dial("127.0.0.1", srv.port)
    eq(ping(s, b"hi"), b"hi", "cat echoes")
    took = closed_after(s, 4)
    check(took <= 2.0, f"an idle program's call ended after {took:.2f} s")
    wait_until(lambda: end_lines(srv), 3)
    lines = srv.err_lines()
    check(any(l.startswith("pbx: exit ") and "signal=15" in l for l in lines),
          f"no exit line with signal=15 in {lines}")
    match(r"pbx: end remote=\S+ ms=\d+ end=idle", end_lines(srv)[0], "end line")
    srv.stop()


@test(params=MODELS, timeout=40)
def test_stubborn_program_killed(t, model):
    # A program that ignores SIGTERM gets SIGKILL after the grace; what it
    # left behind (a child holding the socket) no longer keeps the call
    # open, and the server leaves no zombie.
    prog = ["--", "sh", "-c", 'trap "" TERM; sleep 30; echo late']
    srv = t.serve("127.0.0.1:0", prog,
                  ["-v", "-m", model, "--timeout", "1", "--kill-grace", "1"])
    s = t.dial("127.0.0.1", srv.port)
    took = closed_after(s, 5)
    check(1.8 <= took <= 3.2, f"call of a stubborn program ended after {took:.2f} s "
          "(timeout 1 s + grace 1 s)")
    wait_until(lambda: end_lines(srv), 3)
    lines = srv.err_lines()
    check(any(l.startswith("pbx: exit ") and "signal=9" in l for l in lines),
          f"no exit line with signal=9 in {lines}")
    match(r"pbx: end remote=\S+ ms=\d+ end=timeout", end_lines(srv)[0], "end")
    time.sleep(0.3)
    eq(zombies_of(srv.pid), [], "zombie children of the server")
    srv.stop()


SOCKOPTS = (
    "import socket\n"
    "s = socket.socket(fileno=0)\n"
    "g = lambda l, o: s.getsockopt(l, o)\n"
    "T = socket.IPPROTO_TCP\n"
    "print(g(socket.SOL_SOCKET, socket.SO_KEEPALIVE), g(T, socket.TCP_KEEPIDLE),"
    " g(T, socket.TCP_KEEPINTVL), g(T, socket.TCP_KEEPCNT), g(T, 18), flush=True)\n"
    "s.detach()\n"
)


@test(params=[("default", [], "1 60 10 6 0"),
              ("set", ["--keepalive", "5,2,3", "--user-timeout", "7"], "1 5 2 3 7000"),
              ("off", ["--keepalive", "off"], "0")])
def test_keepalive_reaches_the_socket(t, opts, expected):
    srv = t.serve("127.0.0.1:0", ["--", PY, "-c", SOCKOPTS], list(opts))
    s = t.dial("127.0.0.1", srv.port)
    got = closed_and_read(s)
    if expected == "0":
        eq(got.split()[0], "0", "SO_KEEPALIVE with --keepalive off")
    else:
        eq(got.strip(), expected, "SO_KEEPALIVE KEEPIDLE KEEPINTVL KEEPCNT USER_TIMEOUT")
    srv.stop()


def closed_and_read(s):
    data = b""
    s.settimeout(5)
    while True:
        b = s.recv(4096)
        if not b:
            return data.decode()
        data += b


@test(timeout=40)
def test_silent_callers_do_not_lock_out_others(t):
    # With every option at its default, 200 callers that say nothing do
    # not keep a fresh caller from being served within a second.
    srv = t.serve("127.0.0.1:0", ["echo"], [])
    silent = [t.dial("127.0.0.1", srv.port, source=("127.0.0.2", 0))
              for _ in range(200)]
    time.sleep(0.3)
    start = time.monotonic()
    s = t.dial("127.0.0.1", srv.port, source=("127.0.0.3", 0))
    eq(exchange(s, b"fresh"), b"fresh", "echo for a fresh caller")
    took = time.monotonic() - start
    check(took < 1.0, f"fresh caller served after {took:.2f} s")
    for c in silent:
        c.close()
        t.socks.remove(c)
    srv.stop()


BAD = [
    ("idle-timeout", "-1"), ("idle-timeout", "1e3"), ("idle-timeout", "10q"),
    ("idle-timeout", "604801"), ("timeout", ""), ("kill-grace", "x"),
    ("user-timeout", "-2"),
]


@test(params=[(f"{o}={v or 'empty'}", o, v) for o, v in BAD])
def test_bad_deadline(t, opt, value):
    r = t.run_pbx(["serve", f"--{opt}", value, "127.0.0.1:0"])
    eq(r.rc, 2, "exit status")
    eq(r.err_lines(), [f"pbx: serve: bad {opt} '{value}': expected seconds from 0 "
                       "(off) to 604800, like 30 or 0.5"], "stderr")


@test(params=["1,2", "0,1,1", "1,1,128", "1,,1", "1,2,3,4", "on", "1,2,3x"])
def test_bad_keepalive(t, value):
    r = t.run_pbx(["serve", "--keepalive", value, "127.0.0.1:0"])
    eq(r.rc, 2, "exit status")
    eq(r.err_lines(), [f"pbx: serve: bad keepalive '{value}': expected "
                       "IDLE,INTERVAL,COUNT (seconds 1-32767, seconds 1-32767, 1-127) "
                       "or off"], "stderr")
