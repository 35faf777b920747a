# SPDX-License-Identifier: MIT
"""pbx serve --workers: one listening line, one port for all, callers
spread over the workers, a killed worker replaced, SIGTERM passed on."""
import os
import signal
import time

from harness import (Proc, children, check, eq, hello, match, recv_all, test,
                     wait_until, zombies)


def workers_of(srv, n, timeout=5):
    """The supervisor's n worker pids, once they are all running."""
    got = []

    def ready():
        got[:] = [pid for pid, state in children(srv.pid) if state != "Z"]
        return len(got) == n
    check(wait_until(ready, timeout), f"expected {n} workers, found {got}")
    return list(got)


def greet(t, srv):
    s = t.dial("127.0.0.1", srv.port)
    cport = s.getsockname()[1]
    eq(recv_all(s, 10, "greeting"), hello("127.0.0.1", cport), "greeting")
    s.close()


@test(params=["event", "fork", "serial"])
def test_workers_serve(t, model):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", model, "--workers", "2"])
    pids = workers_of(srv, 2)
    check(srv.pid not in pids, "the supervisor is not one of its workers")
    for _ in range(40):
        greet(t, srv)
    srv.stop()
    # One listening line for the whole group; each worker counts its own.
    eq(srv.err_lines()[0], srv.listen_line(), "listening line")
    lines = [x for x in srv.err_lines()[1:]]
    served = [int(match(srv.SERVED.pattern, x, "worker count").group(1)) for x in lines]
    # The supervisor's own count line was taken off by stop(); together
    # the lines must account for every caller.
    eq(sum(served) + (srv.served or 0), 40, f"connections counted by the workers ({lines})")
    check(wait_until(lambda: all(not os.path.exists(f"/proc/{p}") or
                                 open(f"/proc/{p}/stat").read().split()[2] == "Z"
                                 for p in pids), 5),
          "workers still running after the supervisor stopped")


@test(params=[("single-0", [], 0, "pbx: served 0 connections"),
              ("single-1", [], 1, "pbx: served 1 connection"),
              ("single-2", [], 2, "pbx: served 2 connections"),
              ("worker-1", ["--workers", "1"], 1, "pbx: served 1 connection"),
              ("worker-2", ["--workers", "1"], 2, "pbx: served 2 connections")])
def test_served_count_line(t, opts, callers, line):
    # The closing count says "connection" for one, "connections" for any
    # other number, with or without a supervisor (each worker writes its own).
    srv = t.serve("127.0.0.1:0", ["hello"], opts)
    for _ in range(callers):
        greet(t, srv)
    srv.signal(signal.SIGTERM)
    eq(srv.wait(5), 0, "exit status after SIGTERM")
    srv.wait_eof(3)
    eq(Proc.err_lines(srv), [srv.listen_line(), line], "stderr lines")


@test()
def test_workers_spread(t):
    # With SO_REUSEPORT the kernel hashes callers over both listeners.
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", "event", "-w", "2", "-v"])
    workers_of(srv, 2)
    for _ in range(60):
        greet(t, srv)
    srv.stop()
    # stop() took the last count line off into srv.served.
    counts = [int(x.split()[2]) for x in srv.err_lines() if x.startswith("pbx: served ")]
    counts.append(srv.served)
    eq(len(counts), 2, f"count lines from two workers ({counts})")
    eq(sum(counts), 60, f"callers counted ({counts})")
    check(all(c > 0 for c in counts), f"a worker got no caller: {counts}")


@test()
def test_workers_restart_after_kill(t):
    srv = t.serve("127.0.0.1:0", ["hello"], ["--workers", "2"])
    first = workers_of(srv, 2)
    os.kill(first[0], signal.SIGKILL)
    srv.wait_line(rf"pbx: serve: worker \d \(pid {first[0]}\) killed by signal 9; "
                  r"starting another", what="restart line")
    now = workers_of(srv, 2)
    check(first[0] not in now, f"killed worker {first[0]} still listed: {now}")
    check(first[1] in now, "the other worker was restarted too")
    # Callers are served by the survivors and the replacement alike.
    for _ in range(30):
        greet(t, srv)
    eq(zombies(srv.pid), [], "zombies under the supervisor")
    srv.stop()


@test()
def test_workers_auto_and_bad_values(t):
    srv = t.serve("127.0.0.1:0", ["hello"], ["--workers", "auto"])
    workers_of(srv, os.cpu_count())
    greet(t, srv)
    srv.stop()
    for bad in ("0", "x", "1025", "-1"):
        r = t.run_pbx(["serve", "--workers", bad, "127.0.0.1:0"])
        eq(r.rc, 2, f"exit status for --workers {bad}")
        eq(r.err_lines(), [f"pbx: serve: bad workers '{bad}': expected auto or a number "
                           "from 1 to 1024"], "stderr")


@test()
def test_workers_address_in_use(t):
    busy = t.listener()
    port = busy.getsockname()[1]
    r = t.run_pbx(["serve", "--workers", "2", f"127.0.0.1:{port}"])
    eq(r.rc, 1, "exit status when the address is taken")
    eq(r.err_lines(), [f"pbx: serve: listen 127.0.0.1:{port}: Address already in use"],
       "stderr")


@test()
def test_workers_sigkill_supervisor_takes_workers(t):
    # A supervisor killed outright leaves no worker behind (PDEATHSIG).
    srv = t.serve("127.0.0.1:0", ["hello"], ["--workers", "2"])
    pids = workers_of(srv, 2)
    os.kill(srv.pid, signal.SIGKILL)
    srv.wait(5)

    def gone():
        return all(not os.path.exists(f"/proc/{p}") for p in pids)
    check(wait_until(gone, 5), f"workers {pids} outlived their supervisor")
    time.sleep(0)
