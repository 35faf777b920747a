# SPDX-License-Identifier: MIT
"""Storms (reliability.md (b)2, (b)11, (b)24 and (c)): 5000 mixed calls
through servers with 32 fds (allowed, denied, over the per-IP limit, bad
PROXY headers, a program that cannot start) that leave no fd and no zombie
behind; HUP and CHLD storms while callers keep calling, and a TERM storm
that must end in one clean stop; a stopped
server whose backlog overflows, drained after SIGCONT; and a caller that
sends to echo without ever reading, cut by the idle timeout while the
server's memory stays put and others are served. Every model."""
import errno
import os
import re
import select
import signal
import socket
import threading
import time

import harness
from harness import (Failure, check, children, eq, fd_list, need_tool, short, test,
                     wait_until, zombies)

# The last field is this model's third octet of the callers' 127.X.N.*
# addresses: each test and model calls from its own addresses, so the
# ports its calls leave in TIME_WAIT are not another test's to run out of.
MODELS = [("event", ["-m", "event"], 0), ("serial", ["-m", "serial"], 1),
          ("fork", ["-m", "fork"], 2), ("workers", ["--workers", "2"], 3)]

RESET = "reset"  # what call() returns when the server reset the call


def write(t, name, text):
    """Write name in the test's directory through a rename, as a rules
    file must be replaced under a running server."""
    path = os.path.join(t.tmpdir(), name)
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)
    return path


def call(t, srv, source, data=b"", timeout=5):
    """One call from source: send data, half-close, read until the server
    closes. Returns the bytes read, or RESET for a reset."""
    s = t.dial("127.0.0.1", srv.port, source=(source, 0))
    buf = bytearray()
    try:
        s.settimeout(timeout)
        if data:
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while True:
            b = s.recv(65536)
            if not b:
                return bytes(buf)
            buf += b
    except (ConnectionResetError, BrokenPipeError):
        return RESET
    except socket.timeout:
        raise Failure(f"call from {source}: the server did not close it within {timeout} s"
                      f" (got {short(bytes(buf))})")
    except OSError as e:
        if e.errno == errno.ENOTCONN:  # reset before the half-close
            return RESET
        raise
    finally:
        s.close()
        t.socks.remove(s)


def pids_of(srv, opts):
    """The processes of a server that hold its listeners: the process
    itself, or under --workers the supervisor and its workers."""
    if "--workers" not in opts:
        return [srv.pid]
    n = int(opts[opts.index("--workers") + 1])
    got = []

    def ready():
        got[:] = [c for c, state in children(srv.pid) if state != "Z"]
        return len(got) == n
    check(wait_until(ready, 5), f"expected {n} workers under {srv.pid}, found {got}")
    return [srv.pid] + got


def fds_of(pids):
    return {p: fd_list(p) for p in pids}


def zombies_of(pids):
    return [z for p in pids for z in zombies(p)]


def served_total(srv):
    """Connections counted by every 'served N' line (one per worker)."""
    lines = harness.Proc.err_lines(srv)  # with the line stop() sets apart
    return sum(int(m.group(1)) for m in map(srv.SERVED.match, lines) if m)


def lines_like(srv, prefix):
    return [x for x in srv.err_lines() if x.startswith(prefix)]


def greeting_re(source):
    return re.compile(rb"Hello, person from " + re.escape(source.encode()) + rb":\d+\n")


# ---------------------------------------------------------------------------
# (b)2, (c) Descriptor exhaustion: 5000 mixed calls under RLIMIT_NOFILE=32
# ---------------------------------------------------------------------------

BAD_HEADER = b"PROXY TCP4 192.0.2.07 192.0.2.9 1234 80\r\n"  # a leading zero
NO_PROGRAM = "/nonexistent/pbx-storms-program"
CALLS = 5000


@test(params=MODELS, timeout=120)
def test_mixed_calls_under_32_fds(t, opts, net):
    # A leak of one fd per refused or failed call (socat CVE-2013-3571)
    # would run a 32-fd server dry within a few dozen calls; here each
    # kind of call comes about a thousand times, its outcome checked.
    need_tool("prlimit", "util-linux")
    pre = f"127.61.{net}."
    proxy, denied, held_ip = pre + "9", pre + "3", pre + "5"
    rules = write(t, "rules", f"127.0.0.0/8 allow\n{denied} deny\n")
    nofile = ["prlimit", "--nofile=32"]
    # No idle timeout: the held call must outlast the run, however slow.
    srv = t.serve("127.0.0.1:0", ["echo"],
                  ["-v", "--idle-timeout", "0", "--rules", rules, "--max-per-ip", "1",
                   "--reject-message", "busy", "--proxy-protocol", "--proxy-from", proxy]
                  + opts, prefix=nofile)
    nox = t.serve("127.0.0.1:0", ["--", NO_PROGRAM], opts, prefix=nofile)
    no_program = f"pbx: serve: run {NO_PROGRAM}: No such file or directory"
    counts = {}

    # Allowed callers come from 50 addresses in turn: with --max-per-ip 1
    # a fork child counts until it is reaped, which may be just after
    # its caller saw the end, so an address is not called again at once.
    def allowed(i):
        src, data = f"{pre}{20 + i % 50}", b"call %d\n" % i
        eq(call(t, srv, src, data), data, f"call {i}: echo for {src}")

    def proxied(i):
        data = b"call %d via the proxy\n" % i
        header = f"PROXY TCP4 {pre}{70 + i % 50} 127.0.0.1 {1024 + i} 80\r\n".encode()
        eq(call(t, srv, proxy, header + data), data, f"call {i}: echo through a PROXY header")

    # The turned-away callers speak too, so that a call served by mistake
    # would show (an echo); closed unread, theirs may end in a reset.
    def deny(i):
        got = call(t, srv, denied, b"denied?\n")
        check(got in (b"", RESET), f"call {i}: from {denied}, denied by its rule: {short(got)}")

    def over_limit(i):
        eq(call(t, srv, held_ip), b"busy\n", f"call {i}: from {held_ip}, over its limit of 1")

    def bad_header(i):
        got = call(t, srv, proxy, BAD_HEADER + b"payload\n")
        check(got in (b"", RESET), f"call {i}: a bad PROXY header got {short(got)}")

    def exec_failure(i):
        got = call(t, nox, pre + "2", b"anyone?\n")
        check(got in (b"", RESET), f"call {i}: a missing program's call got {short(got)}")

    kinds = [allowed, proxied, deny, over_limit, bad_header, exec_failure]
    if opts == ["-m", "serial"]:
        # A serial server answers one call at all: with one held open the
        # next would wait for it, never be over the limit.
        kinds.remove(over_limit)

    def run(first, n):
        for i in range(first, first + n):
            kind = kinds[i % len(kinds)]
            kind(i)
            counts[kind] = counts.get(kind, 0) + 1

    held = None
    if over_limit in kinds:
        held = t.dial("127.0.0.1", srv.port, source=(held_ip, 0))
        held.sendall(b"held")
        eq(harness.recv_exact(held, 4, 5, "the held call's echo"), b"held", "held call")
    run(0, 6 * len(kinds))  # every path once or more before counting fds
    pids = pids_of(srv, opts) + pids_of(nox, opts)
    check(wait_until(lambda: not zombies_of(pids), 3), f"zombies: {zombies_of(pids)}")
    before = fds_of(pids)
    run(6 * len(kinds), CALLS)
    if not wait_until(lambda: fds_of(pids) == before, 3):
        after = fds_of(pids)
        diff = {p: (sorted(set(after[p].items()) - set(before[p].items())),
                    sorted(set(before[p].items()) - set(after[p].items())))
                for p in pids if after[p] != before[p]}
        raise Failure(f"fds changed over {CALLS} calls (pid: (new, gone)): {short(diff, 400)}")
    check(wait_until(lambda: not zombies_of(pids), 3),
          f"zombies after {CALLS} calls: {zombies_of(pids)}")
    # Both still serve, and every call was handled as its kind says.
    allowed(CALLS + 1000)
    exec_failure(CALLS + 1000)
    total = sum(counts.values())
    if held is not None:
        held.close()
        t.socks.remove(held)
    if opts == ["-m", "fork"]:
        check(wait_until(lambda: not children(srv.pid) + children(nox.pid), 5),
              f"children after the calls ended: {children(srv.pid) + children(nox.pid)}")
    srv.stop()
    nox.stop()
    eq(served_total(srv), total - counts[exec_failure] + 1 + (held is not None),
       "connections the server counted")
    eq(served_total(nox), counts[exec_failure] + 1, "connections the no-program server counted")
    eq(len(lines_like(srv, "pbx: deny ")), counts[deny], "deny lines")
    reject = lines_like(srv, "pbx: reject ")
    per_ip = [x for x in reject if x.endswith(" reason=per-ip count=1")]
    eq(len(per_ip), counts.get(over_limit, 0), "per-ip reject lines")
    eq(len(reject) - len(per_ip), counts[bad_header], "bad-header reject lines")
    # (Under --workers, one worker's count line is still among them.)
    eq([x for x in nox.err_lines()[1:] if not nox.SERVED.match(x)],
       [no_program] * served_total(nox), "no-program server's stderr")
    for s in (srv, nox):
        check(not [x for x in s.err_lines() if "Too many open files" in x],
              "a server ran out of fds for one call at a time")


# ---------------------------------------------------------------------------
# (b)24, (c) Signals: HUP, CHLD and TERM storms
# ---------------------------------------------------------------------------

# The storm swaps these in by rename: both let the callers in, and the
# program's reply says which was in force.
RULES_A = "127.0.0.0/8 allow ROLE=a\n"
RULES_B = "127.0.0.0/8 allow ROLE=b\n10.0.0.0/8 deny\n"
ROLE = ["--", "sh", "-c", 'echo "$ROLE"']
STORM_CASES = [(f"{name}-{kind}", opts, 2 * net + i, kind, handler)
               for name, opts, net in MODELS
               for i, (kind, handler) in enumerate([("hello", ["hello"]), ("program", ROLE)])]
BURSTS = 100  # of 10 SIGHUP and 10 SIGCHLD each, 20 ms apart: 1000 of each
CAP = 10000  # calls per caller at most, should the storm not end


@test(params=STORM_CASES, timeout=90)
def test_hup_and_chld_storms_during_calls(t, opts, net, kind, handler):
    # Two callers keep calling while the server gets 1000 SIGHUP (each
    # a reload of the rules, which change under it, though signals sent
    # close together coalesce) and 1000 SIGCHLD (no child behind most: a
    # reaper that trusts the signal, or a counter decremented per signal,
    # loses calls). No call may fail, the count
    # at exit must be the calls made, and the last SIGHUP, sent to a
    # server with nothing else to do, must still be acted on (a signal
    # that lands between a check and the wait is otherwise lost).
    pre = f"127.62.{net}."
    rules = write(t, "rules", RULES_A)
    srv = t.serve("127.0.0.1:0", handler, ["--rules", rules] + opts)
    pids = pids_of(srv, opts)
    stop = threading.Event()
    made = [0, 0]
    errors = []

    def caller(k):
        try:
            while not stop.is_set() and made[k] < CAP:
                src = f"{pre}{10 + 50 * k + made[k] % 50}"
                got = call(t, srv, src)
                if kind == "hello":
                    check(got != RESET and greeting_re(src).fullmatch(got),
                          f"call {made[k]} from {src}: got {short(got)}")
                else:
                    check(got in (b"a\n", b"b\n"), f"call {made[k]} from {src}: got {short(got)}")
                made[k] += 1
        except Exception as e:  # any error, reported below
            errors.append(f"caller {k}: {e}")

    callers = [threading.Thread(target=caller, args=(k,), daemon=True) for k in (0, 1)]
    for c in callers:
        c.start()
    wait_until(lambda: sum(made) >= 10 or errors, 10)  # the load is on
    at_start = sum(made)
    for burst in range(BURSTS):
        if burst % 10 == 9:
            write(t, "rules", RULES_B if burst % 20 == 9 else RULES_A)
        for _ in range(10):
            srv.signal(signal.SIGHUP)
            for p in pids:
                os.kill(p, signal.SIGCHLD)
        time.sleep(0.02)
    during = sum(made) - at_start
    stop.set()
    for c in callers:
        c.join(15)
    check(not errors, errors[0] if errors else "")
    check(not any(c.is_alive() for c in callers), "a caller hung")
    check(during >= 10, f"only {during} calls were made during the storm")
    srv.check_alive("after the storms")
    # The storm's reloads, each of one of the two files, never an error.
    nw = len(pids) - 1 if len(pids) > 1 else 1
    reloads = lines_like(srv, "pbx: rules reloaded ")
    want = {f"pbx: rules reloaded from {rules}: {n} rules" for n in (1, 2)}
    check(set(reloads) <= want, f"unexpected reload lines: {short(sorted(set(reloads) - want))}")
    check(1 <= len(reloads) <= BURSTS * 10 * nw, f"{len(reloads)} reload lines")
    eq(lines_like(srv, "pbx: serve: reload"), [], "reload errors")
    # The last SIGHUP, alone.
    start = len(srv.err_lines())
    write(t, "rules", f"127.0.0.0/8 allow ROLE=final\n{pre}7 deny\n10.0.0.0/8 deny\n")
    srv.signal(signal.SIGHUP)
    for _ in range(nw):
        i, _ = srv.wait_line(re.escape(f"pbx: rules reloaded from {rules}: 3 rules"), 3,
                             start=start, what="the reload after the storm")
        start = i + 1
    eq(call(t, srv, pre + "7"), b"", "a caller the new rules deny")
    got = call(t, srv, pre + "8")
    if kind == "hello":
        check(greeting_re(pre + "8").fullmatch(got), f"greeting after the storm: {short(got)}")
    else:
        eq(got, b"final\n", "the program's ROLE after the last reload")
    check(wait_until(lambda: not zombies_of(pids), 3), f"zombies: {zombies_of(pids)}")
    srv.stop(timeout=3)
    eq(served_total(srv), sum(made) + 2, "connections the server counted")


@test(params=MODELS, timeout=30)
def test_sigterm_storm(t, opts, net):
    # 1000 SIGTERMs within some 20 ms, with a call on: one clean
    # stop (status 0, one count line per process that counts), no hang,
    # no second exit path taken by a signal that came during the first.
    pre = f"127.65.{net}."
    srv = t.serve("127.0.0.1:0", ["echo"], opts)
    workers = len(pids_of(srv, opts)) - 1
    held = t.dial("127.0.0.1", srv.port, source=(pre + "2", 0))
    held.sendall(b"held")
    eq(harness.recv_exact(held, 4, 5, "echo"), b"held", "the held call")
    # Spread out a little, so that some come while the server is already
    # on its way out. (Not waited for, it stays a zombie: its pid
    # cannot go to another process.)
    for i in range(1000):
        srv.signal(signal.SIGTERM)
        if i % 10 == 9:
            time.sleep(0.0002)
    eq(srv.wait(5), 0, "exit status after 1000 SIGTERMs")
    if opts == ["-m", "fork"]:
        # The child finishes the call it is on (README), storm or not.
        held.sendall(b"after")
        eq(harness.recv_exact(held, 5, 5, "echo after the stop"), b"after",
           "the fork child's echo after the server stopped")
    held.shutdown(socket.SHUT_WR)
    held.settimeout(5)
    eq(held.recv(16), b"", "the held call's end")
    check(srv.wait_eof(5), "stderr still open 5 s after the stop")
    eq(srv.stdout(), b"", "stdout")
    lines = srv.err_lines()
    counts = sorted(x for x in lines if srv.SERVED.match(x))
    if workers:  # one count line per worker, one of them with the call
        eq(counts, ["pbx: served 0 connections"] * (workers - 1) + ["pbx: served 1 connection"],
           "count lines")
    else:
        eq(counts, ["pbx: served 1 connection"], "count lines")
    eq([x for x in lines if x not in counts], [srv.listen_line()], "other stderr lines")


# ---------------------------------------------------------------------------
# (b)11, (c) Signals: SIGSTOP, then SIGCONT, with the backlog overflowing
# ---------------------------------------------------------------------------

CALLERS = 20
BACKLOG = 4


@test(params=MODELS, timeout=40)
def test_stopped_server_drains_an_overflowing_backlog(t, opts, net):
    # test_serve's talking callers stop the server too, but within its
    # default backlog. Here 20 callers meet a stopped server with -b 4:
    # the kernel completes the handshake for backlog + 1 of them per
    # listener and holds off the others. After SIGCONT each queued caller
    # must be served. The others connect once the queue drains, but a
    # burst of them overflows it again and the kernel resets some of
    # those itself (a plain python accept loop sees the same): each of
    # them must be served or reset, none left hanging, and every call
    # the server counts must be one that was served. (Echo, not the
    # greeting: a greeting would not wait for the late caller's bytes.)
    pre = f"127.63.{net}."
    srv = t.serve("127.0.0.1:0", ["echo"], ["-b", str(BACKLOG)] + opts)
    pids = pids_of(srv, opts)
    listeners = max(1, len(pids) - 1)
    socks, reset = [], []
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        for i in range(CALLERS):
            s = socket.socket()
            t.socks.append(s)
            s.bind((f"{pre}{10 + i}", 0))
            s.setblocking(False)
            eq(s.connect_ex(("127.0.0.1", srv.port)), errno.EINPROGRESS, f"connect {i}")
            socks.append(s)
        time.sleep(2)
        queued = [i for i, s in enumerate(socks) if writable(s, 0)]
        for i in queued:
            check(speak(socks[i], i), f"queued caller {i} was reset")
    finally:
        for p in reversed(pids):
            os.kill(p, signal.SIGCONT)
    # Linux queues backlog + 1 per listener; the rest must have waited.
    check(BACKLOG + 1 <= len(queued) <= listeners * (BACKLOG + 1),
          f"{len(queued)} of {CALLERS} callers connected to a stopped server with -b "
          f"{BACKLOG} and {listeners} listener(s)")
    for i, s in enumerate(socks):
        if i not in queued:
            check(writable(s, 10), f"caller {i} did not connect within 10 s of SIGCONT")
            if not speak(s, i):
                reset.append(i)
    served = 0
    for i, s in enumerate(socks):
        got = b""
        if i in reset:
            continue
        try:
            while True:
                b = s.recv(256)
                if not b:
                    break
                got += b
        except socket.timeout:
            raise Failure(f"caller {i} ({'queued' if i in queued else 'late'}):"
                          f" no end within 10 s (got {short(got)})")
        except ConnectionResetError:
            check(i not in queued, f"queued caller {i} was reset after {short(got)}")
            eq(got, b"", f"late caller {i}: bytes before its reset")
            continue
        eq(got, request(i), f"caller {i} ({'queued' if i in queued else 'late'})")
        served += 1
    srv.stop()
    eq(served_total(srv), served, "connections the server counted (calls served)")


def request(i):
    return b"caller %d\n" % i


def speak(s, i):
    """Send a connected caller's bytes and half-close; False if the
    kernel reset the call first."""
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err == errno.ECONNRESET:
        return False
    eq(err, 0, f"caller {i}'s connect")
    s.setblocking(True)
    s.settimeout(10)
    try:
        s.sendall(request(i))
        s.shutdown(socket.SHUT_WR)
    except (ConnectionResetError, BrokenPipeError):
        return False
    except OSError as e:
        if e.errno != errno.ENOTCONN:  # reset before the half-close
            raise
        return False
    return True


def writable(s, timeout):
    """True once a non-blocking connect has finished (or failed)."""
    poller = select.poll()
    poller.register(s, select.POLLOUT)
    return bool(poller.poll(timeout * 1000))


# ---------------------------------------------------------------------------
# (c) Hostile clients: sends 1 GB to echo but never reads
# ---------------------------------------------------------------------------

IDLE = 2
GIB = 1 << 30
RSS_GROWTH_KIB = 16 * 1024
FLOOD_CASES = [(f"{name}-{kind}", opts, 2 * net + i, handler)
               for name, opts, net in MODELS
               for i, (kind, handler) in enumerate([("echo", ["echo"]), ("cat", ["--", "cat"])])]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"^VmRSS:\s+(\d+) kB$", f.read(), re.M)
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(m.group(1)) if m else 0  # a zombie has no VmRSS line


def pbx_rss(pid):
    """VmRSS of pid and of every pbx process under it (fork children,
    workers), in KiB: what pbx itself holds, not the program it runs."""
    total = rss_kib(pid)
    for c, _ in children(pid):
        try:
            with open(f"/proc/{c}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == "pbx":
            total += pbx_rss(c)
    return total


@test(params=FLOOD_CASES, timeout=60)
def test_caller_that_never_reads(t, opts, net, handler):
    # The caller sends and sends and never reads. The server must not
    # buffer what it cannot send back: once both ways are full nothing
    # moves, and the idle timeout ends the call (within its 2 s + 1 s of
    # the caller's last progress) with the server's memory as it was,
    # while a fresh caller is served at once (the event loop must not
    # block on the stuck write; serial, one call at all, serves it when
    # the stuck one is cut).
    pre = f"127.64.{net}."
    serial = opts == ["-m", "serial"]
    srv = t.serve("127.0.0.1:0", handler, ["-v", "--idle-timeout", str(IDLE)] + opts)
    s = t.dial("127.0.0.1", srv.port, source=(pre + "2", 0))
    s.sendall(b"ping")
    eq(harness.recv_exact(s, 4, 5, "the first echo"), b"ping", "echo before the flood")
    time.sleep(0.2)  # a fork child or program has settled in
    base = pbx_rss(srv.pid)
    peak = base
    chunk = bytes(65536)
    sent = 0
    last = time.monotonic()  # the caller's last progress
    fresh = None
    poller = select.poll()
    poller.register(s, select.POLLOUT)
    s.setblocking(False)
    while True:
        try:
            sent += s.send(chunk)
            last = time.monotonic()
            if sent % (8 << 20) < 65536:
                peak = max(peak, pbx_rss(srv.pid))
                check(peak - base < 4 * RSS_GROWTH_KIB,
                      f"server RSS grew by {peak - base} KiB after {sent >> 20} MiB sent")
            check(sent < GIB, "1 GiB went into a call whose caller never reads")
            continue
        except BlockingIOError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            break  # cut: the server closed with unread bytes
        now = time.monotonic()
        if now - last > IDLE + 1:
            raise Failure(f"the call was not cut within {IDLE + 1} s of its last progress"
                          f" ({sent >> 20} MiB sent)")
        if fresh is None and now - last > 0.5:
            # Stuck both ways: the moment to weigh the server and to call.
            peak = max(peak, pbx_rss(srv.pid))
            fresh = t.dial("127.0.0.1", srv.port, source=(pre + "3", 0))
            if not serial:
                start = time.monotonic()
                eq(harness.exchange(fresh, b"fresh", 1, "a fresh caller's echo"), b"fresh",
                   "a fresh caller's echo while the flood is stuck")
                check(time.monotonic() - start < 1, "the fresh caller waited")
        poller.poll(50)
    took = time.monotonic() - last
    check(fresh is not None, f"the caller was cut while still sending ({sent >> 20} MiB)")
    check(took <= IDLE + 1, f"cut {took:.2f} s after the caller's last progress")
    check(peak - base < RSS_GROWTH_KIB,
          f"server RSS grew by {peak - base} KiB ({base} KiB before) over {sent >> 20} MiB")
    if serial:
        eq(harness.exchange(fresh, b"fresh", IDLE + 1, "the waiting caller's echo"), b"fresh",
           "the waiting caller's echo once the flood was cut")
    port = s.getsockname()[1]
    _, m = srv.wait_line(rf"pbx: end remote={re.escape(pre)}2:{port} .*end=(\w+).*", 5,
                         what="the flood's end line")
    eq(m.group(1), "idle", f"how the flood ended ({m.group(0)})")
    srv.check_alive("after the flood")
    srv.stop()
