# SPDX-License-Identifier: MIT
"""pbx serve with the built-in handlers: greetings, echo, discard, both
models, -v/-q/--trace lines, --max-conns, signals, children, fds, resets."""
import os
import re
import signal
import socket
import threading
import time

from harness import (MODELS, Failure, check, children, eq, exchange, fd_list,
                     fill_without_reading, hello, listening_port_of, match,
                     nothing_arrives, recv_all, recv_exact, set_linger0, short,
                     test, wait_until, zombies)

MIB = 1 << 20


def same_bytes(got, want, what):
    if got == want:
        return
    n = min(len(got), len(want))
    first = next((i for i in range(n) if got[i] != want[i]), n)
    raise Failure(f"{what}: got {len(got)} bytes, expected {len(want)}; "
                  f"first difference at offset {first}")


def served_hello(t, srv, host):
    s = t.dial(host, srv.port)
    cport = s.getsockname()[1]
    eq(recv_all(s, 10, "greeting"), hello(host, cport), "greeting")
    s.close()
    return cport


# ---------------------------------------------------------------------------
# Greetings
# ---------------------------------------------------------------------------

@test(params=MODELS)
def test_hello_ipv4(t, model):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model])
    served_hello(t, srv, "127.0.0.1")
    served_hello(t, srv, "127.0.0.1")
    srv.stop()
    eq(srv.err_lines(), [srv.listen_line()], "stderr")


@test(params=MODELS)
def test_hello_ipv6(t, model):
    srv = t.serve("[::1]:0", ["hello"], ["-m", model])
    served_hello(t, srv, "::1")
    srv.stop()
    eq(srv.err_lines(), [srv.listen_line()], "stderr")


@test(params=MODELS)
def test_hello_dual_stack(t, model):
    srv = t.serve(":0", ["hello"], ["--model", model])
    eq(srv.listen_line(), f"pbx: listening on [::]:{srv.port}", "listening line")
    served_hello(t, srv, "127.0.0.1")  # an IPv4 peer shows as a plain dotted quad
    served_hello(t, srv, "::1")
    srv.stop()
    eq(srv.err_lines(), [srv.listen_line()], "stderr")


@test()
def test_default_handler_is_hello(t):
    srv = t.serve("127.0.0.1:0", [])
    served_hello(t, srv, "127.0.0.1")
    srv.stop()


@test()
def test_default_model_is_event(t):
    # The event model serves in its own process: no child pid in the
    # accept line, and the end line counts the bytes itself.
    srv = t.serve("127.0.0.1:0", ["hello"], ["-v"])
    cport = served_hello(t, srv, "127.0.0.1")
    n = len(hello("127.0.0.1", cport))
    srv.wait_line(rf"pbx: end remote=127\.0\.0\.1:{cport} in=0 out={n} ms=\d+ end=closed",
                  what="in-process end line")
    srv.stop()
    match(rf"pbx: accept remote=127\.0\.0\.1:{cport} local=127\.0\.0\.1:{srv.port}$",
          srv.err_lines()[1], "event-model accept line (no pid)")
    eq(children(srv.pid), [], "children of the event-model server")


# ---------------------------------------------------------------------------
# echo and discard
# ---------------------------------------------------------------------------

@test(params=MODELS)
def test_echo_1mib(t, model):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model])
    data = os.urandom(MIB)
    s = t.dial("127.0.0.1", srv.port)
    same_bytes(exchange(s, data), data, "echo of 1 MiB")
    srv.stop()
    eq(srv.err_lines(), [srv.listen_line()], "stderr")


@test(params=MODELS)
def test_echo_ipv6_dual_stack(t, model):
    srv = t.serve(":0", ["echo"], ["-m", model])
    for host in ("127.0.0.1", "::1"):
        data = os.urandom(64 * 1024)
        s = t.dial(host, srv.port)
        same_bytes(exchange(s, data), data, f"echo via {host}")
    srv.stop()


@test(params=MODELS)
def test_echo_waits_for_half_close(t, model):
    # echo keeps the connection open after replying, until the client's EOF.
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model])
    s = t.dial("127.0.0.1", srv.port)
    s.sendall(b"one\n")
    eq(recv_exact(s, 4), b"one\n", "first echo")
    check(nothing_arrives(s, 0.3), "echo closed the connection before the client's EOF")
    s.sendall(b"two\n")
    eq(recv_exact(s, 4), b"two\n", "second echo")
    s.shutdown(socket.SHUT_WR)
    eq(recv_all(s), b"", "after half-close")
    srv.stop()


@test(params=MODELS)
def test_discard_1mib(t, model):
    srv = t.serve("127.0.0.1:0", ["discard"], ["-m", model, "-v"])
    s = t.dial("127.0.0.1", srv.port)
    cport = s.getsockname()[1]
    eq(exchange(s, os.urandom(MIB)), b"", "discard reply")
    # Every model counts the bytes: under fork, the child that served.
    srv.wait_line(rf"pbx: end remote=127\.0\.0\.1:{cport} in={MIB} out=0 ms=\d+ end=closed",
                  what="end line with in=1048576 out=0")
    if model == "fork":
        srv.wait_line(rf"pbx: exit remote=127\.0\.0\.1:{cport} pid=\d+ status=0 ms=\d+",
                      what="the child's exit line")
    srv.stop()


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

@test()
def test_serial_one_at_a_time(t):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", "serial"])
    a = t.dial("127.0.0.1", srv.port)
    a.sendall(b"a")
    eq(recv_exact(a, 1), b"a", "first client's echo")
    b = t.dial("127.0.0.1", srv.port)  # completes in the kernel's backlog
    b.sendall(b"b")
    check(nothing_arrives(b, 1.0), "serial model served a second client while the first"
          " was still connected")
    a.shutdown(socket.SHUT_WR)
    eq(recv_all(a), b"", "first client after half-close")
    a.close()
    eq(recv_exact(b, 1, 5, "second client's echo"), b"b", "second client's echo")
    srv.stop()


@test()
def test_fork_concurrent(t):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", "fork"])
    a = t.dial("127.0.0.1", srv.port)
    a.sendall(b"a")
    eq(recv_exact(a, 1), b"a", "first client's echo")
    b = t.dial("127.0.0.1", srv.port)
    b.sendall(b"b")
    eq(recv_exact(b, 1, 5, "second client's echo while the first is open"), b"b",
       "second client's echo")
    a.close()
    b.close()
    srv.stop()


# ---------------------------------------------------------------------------
# -v, -q, --trace
# ---------------------------------------------------------------------------

@test(params=MODELS)
def test_verbose_lines(t, model):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model, "-v"])
    cport = served_hello(t, srv, "127.0.0.1")
    n = len(hello("127.0.0.1", cport))
    accept = rf"pbx: accept remote=127\.0\.0\.1:{cport} local=127\.0\.0\.1:{srv.port}"
    # Whoever served the connection counts its bytes (under fork, the
    # child); the fork parent then says how the child exited.
    end = rf"pbx: end remote=127\.0\.0\.1:{cport} in=0 out={n} ms=(\d+) end=closed"
    want = [accept, end]
    if model == "fork":
        want[0] += r" pid=(\d+)"
        want.append(rf"pbx: exit remote=127\.0\.0\.1:{cport} pid=(\d+) status=0 ms=(\d+)")
    srv.wait_line(want[-1], what="last event line")
    srv.stop()
    lines = srv.err_lines()
    eq(len(lines), len(want) + 1, f"stderr lines {lines}")
    eq(lines[0], srv.listen_line(), "first line")
    ms = [match(rx, line, "event line") for rx, line in zip(want, lines[1:])]
    if model == "fork":
        eq(ms[2].group(1), ms[0].group(1), "pid in the exit line (same as the accept line)")
        check(int(ms[0].group(1)) not in (0, srv.pid), f"accept pid {ms[0].group(1)} is not a child")
    check(int(ms[1].group(1)) < 10000, f"ms={ms[1].group(1)} for a greeting")


@test()
def test_verbose_echo_counts(t):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", "serial", "-v"])
    s = t.dial("127.0.0.1", srv.port)
    cport = s.getsockname()[1]
    eq(exchange(s, b"hello"), b"hello", "echo")
    srv.wait_line(rf"pbx: end remote=127\.0\.0\.1:{cport} in=5 out=5 ms=\d+ end=closed",
                  what="end line with in=5 out=5")
    srv.stop()


@test()
def test_verbose_ipv6(t):
    srv = t.serve("[::1]:0", ["hello"], ["-m", "serial", "-v"])
    cport = served_hello(t, srv, "::1")
    n = len(hello("::1", cport))
    srv.wait_line(rf"pbx: end remote=\[::1\]:{cport} in=0 out={n} ms=\d+ end=closed",
                  what="end line")
    srv.stop()
    match(rf"pbx: accept remote=\[::1\]:{cport} local=\[::1\]:{srv.port}",
          srv.err_lines()[1], "accept line")


@test()
def test_quiet(t):
    # -q keeps errors and the readiness line scripts wait for, nothing else.
    srv = t.serve("127.0.0.1:0", ["hello"], ["-q"])
    served_hello(t, srv, "127.0.0.1")
    srv.stop()
    eq(srv.err_lines(), [srv.listen_line()], "stderr with -q")


def subsequence(lines, patterns, what):
    """Find each pattern (fullmatch), in order, among lines. Patterns are
    callables taking the groups matched so far (a dict) and returning a regex."""
    got = {}
    i = 0
    for pat in patterns:
        rx = pat(got) if callable(pat) else pat
        while i < len(lines) and not re.fullmatch(rx, lines[i]):
            i += 1
        if i == len(lines):
            raise Failure(f"{what}: no line /{rx}/ in order\n" + "\n".join(lines))
        got.update(re.fullmatch(rx, lines[i]).groupdict())
        i += 1
    return got


TRACE_CASES = [
    ("serial-ipv4", "serial", "127.0.0.1:0", "AF_INET", "127.0.0.1:0", "127.0.0.1"),
    ("fork-ipv4", "fork", "127.0.0.1:0", "AF_INET", "127.0.0.1:0", "127.0.0.1"),
    ("serial-ipv6", "serial", "[::1]:0", "AF_INET6", "[::1]:0", "::1"),
    ("fork-dual", "fork", ":0", "AF_INET6", "[::]:0", "127.0.0.1"),
]


@test(params=TRACE_CASES)
def test_trace(t, model, addr, family, bind_text, client):
    srv = t.serve(addr, ["hello"], ["-m", model, "--trace"])
    cport = served_hello(t, srv, client)
    remote = f"[{client}]:{cport}" if ":" in client else f"{client}:{cport}"
    pats = [
        rf"pbx: trace: socket\({family}, SOCK_STREAM\) = (?P<L>\d+)",
        lambda g: rf"pbx: trace: bind\({g['L']}, {re.escape(bind_text)}\)",
        lambda g: rf"pbx: trace: listen\({g['L']}, 4096\)",
        re.escape(srv.listen_line()),
        lambda g: rf"pbx: trace: accept\({g['L']}\) = (?P<C>\d+) from {re.escape(remote)}",
    ]
    if model == "fork":
        pats.append(r"pbx: trace: fork\(\) = (?P<P>\d+)")
    pats.append(lambda g: rf"pbx: trace: close\({g['C']}\)")
    srv.wait_line(pats[-1]({"C": r"\d+"}), what="close trace line")
    srv.stop()
    lines = srv.err_lines()
    g = subsequence(lines, pats, "trace lines")
    check(g["L"] != g["C"], "accept returned the listening fd")
    if model == "fork":
        check(int(g["P"]) not in (0, srv.pid), f"fork() = {g['P']} is not a child pid")
    others = [x for x in lines if not x.startswith("pbx: trace: ") and x != srv.listen_line()]
    check(not others, f"stderr lines that are neither trace nor listening: {others}")


# ---------------------------------------------------------------------------
# --max-conns
# ---------------------------------------------------------------------------

@test(params=["fork", "event"], exclusive=True)
def test_max_conns_blocks_third(t, model):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model, "-c", "2", "-v"])
    a = t.dial("127.0.0.1", srv.port)
    b = t.dial("127.0.0.1", srv.port)
    for s, tag in ((a, b"a"), (b, b"b")):
        s.sendall(tag)
        eq(recv_exact(s, 1, 5, "echo"), tag, "echo with one of two allowed connections")
    c = t.dial("127.0.0.1", srv.port)
    cport = c.getsockname()[1]
    c.sendall(b"c")
    check(nothing_arrives(c, 1.0), "a third client was served while 2 connections were live"
          " with --max-conns 2")
    accepts = [x for x in srv.err_lines() if x.startswith("pbx: accept ")]
    eq(len(accepts), 2, f"accept lines while full ({accepts})")
    a.shutdown(socket.SHUT_WR)
    eq(recv_all(a, 5), b"", "first client after half-close")
    a.close()
    eq(recv_exact(c, 1, 5, "third client's echo after one ended"), b"c",
       "third client's echo after one ended")
    srv.wait_line(rf"pbx: accept remote=127\.0\.0\.1:{cport} local=127\.0\.0\.1:{srv.port}"
                  r"( pid=\d+)?$", what="third client's accept line")
    b.close()
    c.close()
    srv.stop()


# ---------------------------------------------------------------------------
# Signals, children, fds
# ---------------------------------------------------------------------------

@test(params=[("serial-TERM", "serial", signal.SIGTERM), ("fork-TERM", "fork", signal.SIGTERM),
              ("serial-INT", "serial", signal.SIGINT), ("fork-INT", "fork", signal.SIGINT)])
def test_signal_exits_0(t, model, sig):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model])
    srv.stop(sig)  # right after the readiness line
    eq(srv.err_lines(), [srv.listen_line()], "stderr")
    s = socket.socket()
    t.socks.append(s)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", srv.port))
        raise Failure("the port still accepts connections after the server exited")
    except ConnectionRefusedError:
        pass


@test(params=MODELS)
def test_signal_after_connections_exits_0(t, model):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model])
    for _ in range(3):
        served_hello(t, srv, "127.0.0.1")
    srv.stop(signal.SIGTERM)
    eq(srv.err_lines(), [srv.listen_line()], "stderr")


@test()
def test_sigterm_fork_children_finish(t):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", "fork"])
    s = t.dial("127.0.0.1", srv.port)
    s.sendall(b"before")
    eq(recv_exact(s, 6), b"before", "echo before SIGTERM")
    srv.signal(signal.SIGTERM)
    rc = srv.wait(5)
    eq(rc, 0, "exit status after SIGTERM with a live child")
    s.sendall(b"after")
    eq(recv_exact(s, 5, 5, "echo from the child after the server exited"), b"after",
       "echo after the server exited")
    s.shutdown(socket.SHUT_WR)
    eq(recv_all(s, 5), b"", "after half-close")


@test()
def test_sigterm_serial_busy(t):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", "serial"])
    s = t.dial("127.0.0.1", srv.port)
    s.sendall(b"x")
    eq(recv_exact(s, 1), b"x", "echo")
    srv.stop(signal.SIGTERM)  # promptly, while a connection is live


@test(timeout=60)
def test_no_zombies_fork(t):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", "fork"])
    for _ in range(50):
        served_hello(t, srv, "127.0.0.1")
    gone = wait_until(lambda: not children(srv.pid), 5)
    check(not zombies(srv.pid), f"zombie children of pbx serve 5 s after 50 connections"
          f" ended: {zombies(srv.pid)}")
    check(gone, f"children of pbx serve 5 s after 50 connections ended: {children(srv.pid)}"
          " (pid, state)")
    srv.check_alive()
    srv.stop()


def fd_leak_check(t, srv, connect_once, n):
    before = fd_list(srv.pid)
    check(before, "cannot read /proc/PID/fd of pbx serve")
    for _ in range(n):
        connect_once()
    settled = wait_until(lambda: fd_list(srv.pid) == before and not children(srv.pid), 5)
    if not settled:
        after = fd_list(srv.pid)
        extra = {k: v for k, v in after.items() if before.get(k) != v}
        gone = {k: v for k, v in before.items() if after.get(k) != v}
        raise Failure(f"fds of pbx serve after {n} connections: {len(before)} before,"
                      f" {len(after)} after; new {short(extra)}, gone {short(gone)};"
                      f" children {children(srv.pid)}")


@test(params=MODELS, timeout=90)
def test_fds_stable_200(t, model):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model])
    fd_leak_check(t, srv, lambda: served_hello(t, srv, "127.0.0.1"), 200)
    srv.stop()


@test(params=MODELS, timeout=60)
def test_fds_stable_echo_resets(t, model):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model])

    def once():
        s = t.dial("127.0.0.1", srv.port)
        s.sendall(b"abc")
        eq(recv_exact(s, 3), b"abc", "echo")
        set_linger0(s)
        s.close()
        t.socks.remove(s)

    fd_leak_check(t, srv, once, 50)
    srv.stop()


# ---------------------------------------------------------------------------
# Resets and SIGPIPE
# ---------------------------------------------------------------------------

@test(params=MODELS, timeout=60)
def test_reset_client_harmless(t, model):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model])
    other = t.dial("127.0.0.1", srv.port) if model != "serial" else None
    a = t.dial("127.0.0.1", srv.port)
    fill_without_reading(a, 8 * MIB)
    set_linger0(a)
    a.close()  # RST in the middle of the transfer
    srv.check_alive("after a client reset mid-transfer")
    if other is None:
        other = t.dial("127.0.0.1", srv.port)
    data = os.urandom(MIB)
    same_bytes(exchange(other, data), data, "another client's 1 MiB echo")
    for _ in range(20):  # resets right after connecting
        s = t.dial("127.0.0.1", srv.port)
        set_linger0(s)
        s.close()
    s = t.dial("127.0.0.1", srv.port)
    eq(exchange(s, b"still here"), b"still here", "echo after 20 resets")
    srv.stop()


@test(params=MODELS, timeout=60)
def test_sigpipe_client_closes_during_echo(t, model):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model, "-v"])
    ports = []
    # 1: the server is blocked writing a big echo when the client closes.
    a = t.dial("127.0.0.1", srv.port)
    ports.append(a.getsockname()[1])
    fill_without_reading(a, 8 * MIB)
    a.close()
    # 2: the client sends and closes at once; the echo goes to a closed socket.
    for _ in range(3):
        b = t.dial("127.0.0.1", srv.port)
        ports.append(b.getsockname()[1])
        b.sendall(os.urandom(256 * 1024))
        b.close()
    for port in ports:
        _, m = srv.wait_line(rf"pbx: end remote=127\.0\.0\.1:{port} (.*)", timeout=10,
                             what=f"end line of the closed client {port}")
        check("signal=" not in m.group(1),
              f"the connection's process died of a signal: {m.group(0)}")
    srv.check_alive("after clients closed during an echo")
    s = t.dial("127.0.0.1", srv.port)
    eq(exchange(s, b"ok"), b"ok", "echo after the closes")
    srv.stop()


@test(params=MODELS)
def test_hello_to_closed_clients(t, model):
    # The greeting is written to clients that already reset or closed.
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model])
    for i in range(20):
        s = t.dial("127.0.0.1", srv.port)
        if i % 2:
            set_linger0(s)
        s.close()
    srv.check_alive("after greeting closed clients")
    served_hello(t, srv, "127.0.0.1")
    srv.stop()


@test(params=MODELS)
def test_many_clients_at_once(t, model):
    # 20 clients connect before any is served; each gets its own greeting.
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model])
    socks = [t.dial("127.0.0.1", srv.port) for _ in range(20)]
    errors = []

    def read(s):
        try:
            eq(recv_all(s, 15), hello("127.0.0.1", s.getsockname()[1]), "greeting")
        except Failure as e:
            errors.append(str(e))

    ths = [threading.Thread(target=read, args=(s,)) for s in socks]
    for th in ths:
        th.start()
    for th in ths:
        th.join(20)
    check(not errors, errors[0] if errors else "")
    srv.stop()


@test(params=MODELS)
def test_hello_to_a_talking_caller(t, model):
    # A caller that spoke before being answered (an HTTP client, nc with
    # input) must still get the whole greeting and a clean end, not a
    # reset: pbx drains what it did not read before closing. The server
    # is stopped while the callers connect and speak, so every request is
    # there when it answers. (A caller that speaks only after the greeting
    # has gone can still meet a reset, as with any server that answers
    # and closes: see README.)
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model])
    os.kill(srv.pid, signal.SIGSTOP)
    calls = []
    try:
        for i in range(30):
            s = t.dial("127.0.0.1", srv.port)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if i % 2:
                s.shutdown(socket.SHUT_WR)
            calls.append((s, s.getsockname()[1]))
    finally:
        os.kill(srv.pid, signal.SIGCONT)
    for i, (s, cport) in enumerate(calls):
        try:
            got = recv_all(s, 5, "greeting")
        except ConnectionResetError:
            raise Failure(f"call {i}: connection reset instead of a clean end")
        eq(got, hello("127.0.0.1", cport), f"call {i}: greeting")
        s.close()  # what a client does at EOF; the server then lets go
        t.socks.remove(s)
    srv.stop()



@test()
def test_hello_linger_is_bounded(t):
    # A caller that sends and then neither reads nor closes is let go
    # after the linger time; the server goes on answering others.
    srv = t.serve("127.0.0.1:0", ["hello"], ["-c", "1"])
    s = t.dial("127.0.0.1", srv.port)
    s.sendall(b"x" * 100)
    start = time.monotonic()
    other = t.dial("127.0.0.1", srv.port)
    eq(recv_all(other, 5, "second greeting")[:19], b"Hello, person from ", "second greeting")
    check(time.monotonic() - start < 3, "the second caller waited for the first's linger")
    eq(recv_all(s, 5, "first greeting")[:19], b"Hello, person from ", "first greeting")
    srv.stop()
