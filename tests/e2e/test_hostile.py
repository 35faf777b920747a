# SPDX-License-Identifier: MIT
"""pbx started in a hostile state: with fd 0, 1 or 2 closed, with a stderr
reader that goes away, with signals ignored (glibc's internal 32 and 33
too, as a parent's posix_spawn leaves them). pbx must not put a socket on a
standard fd, must not die of SIGPIPE, and the programs it runs must get
default dispositions for every signal."""
import os
import re
import select
import signal
import time

from harness import (MODELS, PY, Failure, check, children, eq, fd_list, hello,
                     listening_port_of, match, recv_all, test, wait_until)


def closing(redirect):
    """A launcher that starts pbx with a shell redirection such as '>&-'."""
    return ["sh", "-c", f'exec "$@" {redirect}', "sh"]


# Runs pbx as a child with fd 0 closed and SIGPIPE at default (python
# ignores it), then writes the child's CPU time on stderr and exits with
# its status.
STDIN_CLOSED_TIMED = [PY, "-c", "import os, signal, sys\n"
                      "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
                      "os.close(0)\n"
                      "pid = os.fork()\n"
                      "if pid == 0:\n"
                      "    os.execv(sys.argv[1], sys.argv[1:])\n"
                      "_, st, ru = os.wait4(pid, 0)\n"
                      "print(f'cpu={ru.ru_utime + ru.ru_stime:.3f}', file=sys.stderr)\n"
                      "sys.exit(os.waitstatus_to_exitcode(st))\n"]


@test()
def test_connect_stdout_closed(t):
    # With fd 1 closed, the socket took fd 1 and pbx relayed every reply
    # back into it: an echo server saw its own bytes again and again.
    got = []

    def echo(conn, peer, srv):
        while True:
            b = conn.recv(65536)
            if not b:
                break
            got.append(b)
            conn.sendall(b)
        srv.event("eof", b"".join(got))
    py = t.py_server(echo)
    p = t.pbx(["connect", f"127.0.0.1:{py.port}"], stdin="pipe", launcher=closing(">&-"))
    p.write(b"ping\n")
    time.sleep(0.5)  # time for replies to come back (and, before, to go out again)
    p.close_stdin()
    eq(py.wait_event("eof"), b"ping\n", "what the server received")
    eq(p.wait(5), 0, "pbx connect exit status")
    eq(p.err_lines(), [], "stderr")


@test()
def test_connect_stdin_closed(t):
    # With fd 0 closed, the socket took fd 0: pbx sent the greeting back to
    # the server, then spun on read() = 0 forever.
    srv = t.serve("127.0.0.1:0", ["hello"], ["-v"])
    p = t.pbx(["connect", f"127.0.0.1:{srv.port}"], launcher=STDIN_CLOSED_TIMED)
    eq(p.wait(5), 0, "pbx connect exit status")
    p.wait_eof(3)
    out = p.stdout()
    m = match(rb"Hello, person from 127\.0\.0\.1:(\d+)\n", out, "stdout")
    lines = p.err_lines()
    eq(len(lines), 1, f"stderr lines ({lines})")
    cpu = float(match(r"cpu=([\d.]+)", lines[0], "CPU time line").group(1))
    check(cpu < 0.5, f"pbx connect used {cpu} s of CPU for one greeting")
    cport = m.group(1).decode()
    _, end = srv.wait_line(rf"pbx: end remote=127\.0\.0\.1:{cport} in=(\d+) .*",
                           what="end line")
    eq(end.group(1), "0", "bytes the server received (stdin was closed)")
    srv.stop()


def workers_of(pid, n, timeout=5, without=()):
    """The n worker pids under the supervisor pid, once all listen."""
    got = []

    def ready():
        got[:] = [c for c, state in children(pid) if state != "Z"]
        return (len(got) == n and not set(got) & set(without)
                and all(listening_port_of(c) for c in got))
    check(wait_until(ready, timeout),
          f"expected {n} listening workers under {pid} (not {list(without)}), found {got}")
    return list(got)


def greet(t, port):
    s = t.dial("127.0.0.1", port)
    eq(recv_all(s, 10, "greeting"), hello("127.0.0.1", s.getsockname()[1]), "greeting")
    s.close()


def check_running(p, when):
    rc = p.p.poll()
    if rc is not None:
        how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with {rc}"
        raise Failure(f"pbx serve {how} {when}")


@test()
def test_workers_stderr_closed(t):
    # With fd 2 closed, the supervisor's held socket took fd 2, and its
    # "listening" line, written there, raised SIGPIPE: exit 141 at once.
    p = t.pbx(["serve", "--workers", "2", "127.0.0.1:0"], launcher=closing("2>&-"))
    time.sleep(0.3)
    check_running(p, "with stderr closed")
    pids = workers_of(p.pid, 2)
    eq(fd_list(p.pid).get(2), "/dev/null", "the supervisor's fd 2")
    port = listening_port_of(pids[0])
    for _ in range(4):
        greet(t, port)
    check_running(p, "after serving")
    p.signal(signal.SIGTERM)
    eq(p.wait(5), 0, "exit status after SIGTERM")


def read_lines_until(fd, pattern, timeout=10):
    """Read the FIFO fd until a line fullmatches pattern; returns the match."""
    buf = b""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    poller = select.poll()  # select() fails on fds above 1023
    poller.register(fd, select.POLLIN)
    while time.monotonic() < deadline:
        if not poller.poll(100):
            continue
        b = os.read(fd, 4096)
        if not b:
            time.sleep(0.02)  # no writer yet, or it went away
            continue
        buf += b
        for line in buf.decode(errors="replace").split("\n")[:-1]:
            m = rx.fullmatch(line)
            if m:
                return m
    raise Failure(f"no line /{pattern}/ on the FIFO within {timeout} s: {buf!r}")


@test(params=[("single", []), ("workers", ["--workers", "2"])])
def test_stderr_reader_gone(t, opts):
    # pbx -v logs to a pipe whose reader then goes away. Every later line
    # fails with EPIPE; that must cost the line, not the server. Before,
    # the supervisor (which did not ignore SIGPIPE) died on its next line.
    fifo = os.path.join(t.tmpdir(), "stderr")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        p = t.pbx(["serve", "-v"] + opts + ["127.0.0.1:0"],
                  launcher=["sh", "-c", 'exec "$@" 2>"$0"', fifo])
        port = int(read_lines_until(rfd, r"pbx: listening on 127\.0\.0\.1:(\d+)").group(1))
    finally:
        os.close(rfd)
    greet(t, port)  # -v accept and end lines, into a pipe nobody reads
    if opts:
        first = workers_of(p.pid, 2)
        os.kill(first[0], signal.SIGKILL)  # the supervisor logs a restart
        try:
            workers_of(p.pid, 2, 10, without=[first[0]])
        except Failure:
            check_running(p, "after logging a worker's restart")
            raise
    time.sleep(0.2)
    check_running(p, "after its stderr reader went away")
    for _ in range(3):
        greet(t, port)
    p.signal(signal.SIGTERM)
    eq(p.wait(5), 0, "exit status after SIGTERM")


# Runs pbx through glibc's posix_spawn (os.posix_spawn), which leaves
# signals 32 and 33 ignored in the child; python also passes on SIGPIPE
# and SIGXFSZ ignored. SIGTERM is passed on; the status is pbx's.
SPAWNED = [PY, "-c", "import os, signal, sys\n"
           "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)\n"
           "for s in (signal.SIGTERM, signal.SIGINT):\n"
           "    signal.signal(s, lambda n, f: os.kill(pid, n))\n"
           "_, st = os.waitpid(pid, 0)\n"
           "sys.exit(os.waitstatus_to_exitcode(st))\n"]

SIG_32_33 = (1 << 31) | (1 << 32)


def sig_fields(text, names=("SigBlk", "SigIgn")):
    fields = dict(re.findall(r"^(Sig\w+):\s*([0-9a-fA-F]+)$", text, re.M))
    fields = {k: v for k, v in fields.items() if k in names}
    check(sorted(fields) == sorted(names), f"no {'/'.join(names)} lines in {text!r}")
    return fields


def check_spawned_launcher(t):
    """The launcher does leave 32 and 33 ignored: else the test proves nothing."""
    r = t.run(SPAWNED + ["/bin/grep", "SigIgn", "/proc/self/status"])
    eq(r.rc, 0, "launcher test exit status")
    ign = int(sig_fields(r.out.decode(), ("SigIgn",))["SigIgn"], 16)
    eq(ign & SIG_32_33, SIG_32_33, "signals 32 and 33 ignored under the launcher")


STARTS = [("plain", False), ("posix-spawned", True)]
SERVE_CASES = [(f"{m}-{label}", m, spawned) for m in MODELS for label, spawned in STARTS]


@test(params=SERVE_CASES)
def test_program_signals_all_default(t, model, spawned):
    # Every signal at its default in the program, 32 and 33 included, and
    # none blocked: whatever pbx itself was started with.
    if spawned:
        check_spawned_launcher(t)
    srv = t.serve("127.0.0.1:0", ["--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
                  ["-m", model], launcher=SPAWNED if spawned else ())
    s = t.dial("127.0.0.1", srv.port)
    fields = sig_fields(recv_all(s, 10, "the program's signal state").decode())
    eq(fields, {"SigBlk": "0000000000000000", "SigIgn": "0000000000000000"},
       "signal state of the program")
    srv.stop()


@test(params=STARTS)
def test_connect_program_signals_all_default(t, spawned):
    if spawned:
        check_spawned_launcher(t)
    srv = t.serve("127.0.0.1:0", ["hello"])
    p = t.pbx(["connect", f"127.0.0.1:{srv.port}", "--", "grep", "-E", "^Sig(Blk|Ign)",
               "/proc/self/status"], launcher=SPAWNED if spawned else ())
    eq(p.wait(10), 0, "pbx connect -- grep exit status")
    p.wait_eof(3)
    eq(sig_fields(p.stdout().decode()),
       {"SigBlk": "0000000000000000", "SigIgn": "0000000000000000"},
       "signal state of the program")
    srv.stop()
