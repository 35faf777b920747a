# SPDX-License-Identifier: MIT
"""Running out of descriptors: under RLIMIT_NOFILE=32 with more callers
than fds, pbx serve must not spin (< 5% of a core), must say so once per
episode, and must serve again as soon as callers leave."""
import os
import time

import harness
from harness import check, eq, exchange, need_tool, recv_all, recv_exact, test

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@test(params=["event", "serial", "fork"], timeout=60)
def test_out_of_fds_no_spin(t, model):
    need_tool("prlimit", "util-linux")
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model, "-c", "1000"],
                  prefix=["prlimit", "--nofile=32"])
    clients = [t.dial("127.0.0.1", srv.port) for _ in range(60)]
    for i, c in enumerate(clients[:5]):
        c.sendall(b"%d" % i)
    time.sleep(0.5)  # let the server hit the limit and settle
    before = cpu_ticks(srv.pid)
    time.sleep(3)
    used = cpu_ticks(srv.pid) - before
    # 5% of one core over 3 s.
    check(used <= 0.05 * 3 * TICKS_PER_S,
          f"server used {used} ticks of CPU in 3 s while out of fds (limit "
          f"{0.05 * 3 * TICKS_PER_S:.0f})")
    srv.check_alive("while out of fds")
    for c in clients:
        c.close()
        t.socks.remove(c)
    # Full service within a second once the callers are gone.
    start = time.monotonic()
    s = t.dial("127.0.0.1", srv.port)
    eq(exchange(s, b"back"), b"back", "echo after the load dropped")
    check(time.monotonic() - start < 1.0,
          f"service resumed after {time.monotonic() - start:.2f} s")
    srv.stop()
    if model == "event":
        episodes = [x for x in srv.err_lines() if "Too many open files" in x]
        # One episode: it ends only when the server has caught up with
        # every caller (accept says EAGAIN).
        eq(len(episodes), 1, f"out-of-fds lines ({episodes})")

        eq(episodes[0], "pbx: serve: accept: Too many open files (pausing until a "
           "connection ends, retrying every 100 ms)", "out-of-fds line")


@test(timeout=90)
def test_out_of_fds_every_call_answered(t):
    # 2000 calls through a 32-fd server, 50 at a time (more than it has
    # fds for): each is answered once an earlier one is done.
    need_tool("prlimit", "util-linux")
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", "event"],
                  prefix=["prlimit", "--nofile=32"])
    fds_before = len(os.listdir(f"/proc/{srv.pid}/fd"))
    for batch in range(40):
        calls = [t.dial("127.0.0.1", srv.port) for _ in range(50)]
        for i, c in enumerate(calls):
            c.sendall(b"%04d" % i)
        for i, c in enumerate(calls):
            eq(recv_exact(c, 4, 5, "echo"), b"%04d" % i, f"batch {batch} call {i}")
            c.close()
            t.socks.remove(c)
    time.sleep(0.2)
    eq(len(os.listdir(f"/proc/{srv.pid}/fd")), fds_before, "server fds after the load")
    srv.stop()
    eq(srv.served, 2000, "connections the server counted")


@test(params=["event", "fork"], timeout=60, exclusive=True)
def test_out_of_processes_holds_callers(t, model):
    # RLIMIT_NPROC binds only an unprivileged user: pbx runs as nobody
    # with room for about five processes, and 30 callers arrive at once.
    # The limit counts every process nobody owns, so the test runs alone.
    # Each is held until a program can start (none is dropped), and the
    # episode is one log line.
    need_tool("setpriv", "util-linux")
    need_tool("prlimit", "util-linux")
    # The copy of pbx under test sits in a private directory: let nobody in.
    os.chmod(os.path.dirname(harness.PBX), 0o755)
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
              "prlimit", "--nproc=6"]
    srv = t.serve("127.0.0.1:0", ["--", "sh", "-c", "echo hi; exec sleep 0.3"],
                  ["-m", model], prefix=prefix)
    calls = [t.dial("127.0.0.1", srv.port) for _ in range(30)]
    for i, c in enumerate(calls):
        eq(recv_all(c, 20, f"call {i}"), b"hi\n", f"call {i}")
    # The sanitizer's leak check needs a thread of its own at exit, which
    # the process limit refuses while the last programs still sleep.
    check(harness.wait_until(lambda: not harness.children(srv.pid), 10),
          "the last programs exit")
    srv.stop()
    eq(srv.served, 30, "connections the server counted")
    lines = [x for x in srv.err_lines() if "out of processes" in x]
    what = "fork" if model == "fork" else "run"
    eq(lines, [f"pbx: serve: {what}: Resource temporarily unavailable (out of processes: "
               "holding callers, retrying every 100 ms)"], "out-of-processes lines")
