# SPDX-License-Identifier: MIT
"""The namespace lab (reliability.md 0.1): two network namespaces the test
makes, joined by a veth pair, the caller in A (192.0.2.1) and pbx serve in
B (192.0.2.2). A caller that vanishes (A blackholed with nft) is dropped
by keepalive or TCP_USER_TIMEOUT within the configured bound, under every
model, and its slot is free again; a spoofed SYN flood from A leaves
legitimate callers served (the kernel's syncookies). All traffic stays
inside the two namespaces."""
import json
import re
import time

from harness import PY, Failure, Skip, check, eq, hello, match, need_tool, test

MODELS = [("event", ["-m", "event"]), ("serial", ["-m", "serial"]),
          ("fork", ["-m", "fork"]), ("workers", ["--workers", "2"])]
HANDLERS = [("echo", ["echo"]), ("cat", ["--", "cat"])]
CASES = [(f"{m}-{h}", mo, ho) for m, mo in MODELS for h, ho in HANDLERS]

A_IP, B_IP = "192.0.2.1", "192.0.2.2"


class Lab:
    """Namespaces A and B joined by veth a0 (192.0.2.1) - b0 (192.0.2.2).
    The pair is made inside A, so its names clash with no other test's."""

    def __init__(self, t):
        need_tool("nft", "nftables")
        self.t = t
        self.b = t.netns()
        self.a = t.netns()
        r = t.run(self.a.prefix + ["ip", "link", "add", "a0", "type", "veth", "peer",
                                   "name", "b0", "netns", str(self.b.holder.pid)])
        if r.rc != 0:
            raise Skip(f"cannot make a veth pair: {r.err.strip()}")
        self.sh(self.a, f"ip addr add {A_IP}/24 dev a0 && ip link set a0 up"
                " && nft add table inet lab")
        self.sh(self.b, f"ip addr add {B_IP}/24 dev b0 && ip link set b0 up")

    def sh(self, ns, script):
        r = self.t.run(ns.prefix + ["sh", "-c", script])
        if r.rc != 0:
            raise Failure(f"lab setup `{script}` failed ({r.rc}): {r.err.strip()}")

    def blackhole_a(self):
        """Everything into A is dropped from now on: the caller vanished."""
        self.sh(self.a, "nft add chain inet lab hole "
                "'{ type filter hook input priority -10; policy drop; }'")

    def netstat_b(self):
        """B's TcpExt counters (/proc/PID/net is the namespace of PID)."""
        with open(f"/proc/{self.b.holder.pid}/net/netstat") as f:
            rows = [line.split() for line in f if line.startswith("TcpExt:")]
        return dict(zip(rows[0][1:], map(int, rows[1][1:])))


# The caller in A: sends "before" and reads the echo, says so with its
# port, then on each line of stdin sends "after"; it never closes (a
# closed socket would send a FIN, and the peer would not have vanished).
CALLER = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
    "s.sendall(b'before')\n"
    "got = b''\n"
    "while len(got) < 6:\n"
    "    b = s.recv(6 - len(got))\n"
    "    if not b:\n"
    "        sys.exit('EOF after %r' % got)\n"
    "    got += b\n"
    "print('echoed', got.decode(), s.getsockname()[1], flush=True)\n"
    "for line in sys.stdin:\n"
    "    s.sendall(b'after')\n"
    "    print('sent', flush=True)\n"
)


class Call:
    """The caller in A, once its bytes came back: its port, and when it
    was started and echoed (the call's accept lies between the two)."""

    def __init__(self, t, lab, srv):
        self.started = time.monotonic()
        self.p = t.spawn(lab.a.prefix + [PY, "-c", CALLER, B_IP, str(srv.port)],
                         stdin="pipe")
        out = self.p.wait_stdout(lambda b: b"\n" in b, 10, "caller in A")
        self.echoed = time.monotonic()
        self.port = int(match(r"echoed before (\d+)\n", out.decode(), "caller in A").group(1))

    def send_after(self):
        self.p.write(b"send\n")
        self.p.wait_stdout(lambda b: b"sent\n" in b, 5, "caller in A")
        return time.monotonic()


def fresh_call_in_b(t, lab, srv):
    # Through B's own loopback, so the blackhole cannot touch it; with
    # --max-conns 1 it is served only once the vanished call is gone.
    # (Under --workers the limit is each worker's, so there it shows
    # that service goes on.)
    r = t.run_pbx(["connect", f"127.0.0.1:{srv.port}"], stdin=b"fresh", timeout=5,
                  prefix=lab.b.prefix)
    eq((r.rc, r.out), (0, b"fresh"), "a fresh caller on B's loopback (status, reply)")


def end_lines(lines):
    return [l for l in lines if l.startswith("pbx: end ")]


def wait_dropped(srv, handler, call, since, low, high, echoed):
    """The vanished call ends between low and high seconds after since,
    with the log lines its handler gives such an end."""
    start = len(srv.lines_after_ready())
    srv.wait_line(r"pbx: end .*", high + 4, start=srv.ready_index + 1 + start,
                  what="end line of the vanished call")
    ended = time.monotonic()
    took = ended - since
    check(low <= took <= high, f"the vanished caller was dropped after {took:.2f} s "
          f"(expected {low} to {high} s)")
    lines = srv.lines_after_ready()[start:]
    remote = re.escape(f"{A_IP}:{call.port}")
    if handler[0] == "echo":
        # The kernel's ETIMEDOUT, as the socket reported it to pbx: an
        # error of the call's, unlike pbx's own end=timeout.
        m = match(rf"pbx: end remote={remote} in={echoed} out={echoed} ms=(\d+)"
                  r' end=error error="Connection timed out"', end_lines(lines)[0],
                  "end line")
    else:
        # cat got the ETIMEDOUT on its read, said so and exited 1; the
        # call is over when the program is.
        check("cat: -: Connection timed out" in lines,
              f"cat did not report the timeout: {lines}")
        exits = [l for l in lines if l.startswith("pbx: exit ")]
        match(rf"pbx: exit remote={remote} pid=\d+ status=1 ms=\d+", exits[0], "exit line")
        m = match(rf"pbx: end remote={remote} ms=(\d+) end=closed", end_lines(lines)[0],
                  "end line")
    # pbx's own measure of the call: it began between the caller's start
    # and its echo.
    secs = int(m.group(1)) / 1000
    check(ended - call.echoed - 0.2 <= secs <= ended - call.started + 0.2,
          f"end line says ms={m.group(1)}, the call lasted "
          f"{ended - call.echoed:.2f} to {ended - call.started:.2f} s")


@test(params=CASES, timeout=40)
def test_vanished_caller_found_by_keepalive(t, model, handler):
    # Keepalive 2,1,3: after 2 s of silence, 3 probes 1 s apart, none
    # answered: the kernel gives up 5 s after the last byte from A.
    lab = Lab(t)
    srv = t.serve("0.0.0.0:0", handler, ["-v", "--keepalive", "2,1,3", "--idle-timeout", "0",
                                         "--max-conns", "1"] + model, prefix=lab.b.prefix)
    call = Call(t, lab, srv)
    lab.blackhole_a()
    wait_dropped(srv, handler, call, call.echoed, 4.0, 6.0, 6)
    fresh_call_in_b(t, lab, srv)
    srv.stop()


@test(params=CASES, timeout=40)
def test_vanished_caller_found_by_user_timeout(t, model, handler):
    # No keepalive: a vanished caller that stays silent is not found (2 s
    # of it here, so that a total timeout of 3 s would fail the test). What
    # finds it is the reply to the bytes it sent once blackholed, left
    # unacknowledged for the 3 s of TCP_USER_TIMEOUT.
    lab = Lab(t)
    srv = t.serve("0.0.0.0:0", handler, ["-v", "--keepalive", "off", "--user-timeout", "3",
                                         "--idle-timeout", "0", "--max-conns", "1"] + model,
                  prefix=lab.b.prefix)
    call = Call(t, lab, srv)
    lab.blackhole_a()
    time.sleep(2)
    eq(end_lines(srv.err_lines()), [], "end lines while the blackholed caller is silent")
    wait_dropped(srv, handler, call, call.send_after(), 2.0, 4.0, 11)
    fresh_call_in_b(t, lab, srv)
    srv.stop()


@test(timeout=40)
def test_vanished_caller_holds_its_slot_without_keepalive(t):
    # The control: with keepalive and every deadline off nothing finds the
    # vanished caller, and with --max-conns 1 a fresh caller waits. This is
    # what the two tests above would see if pbx did not set the options.
    lab = Lab(t)
    srv = t.serve("0.0.0.0:0", ["echo"], ["-v", "--keepalive", "off", "--idle-timeout", "0",
                                          "--max-conns", "1"], prefix=lab.b.prefix)
    Call(t, lab, srv)
    lab.blackhole_a()
    fresh = t.pbx(["connect", f"127.0.0.1:{srv.port}"], stdin=b"fresh",
                  prefix=lab.b.prefix)
    time.sleep(7)  # past the 5 s the keepalive test allows
    check(fresh.alive(), "the fresh caller was done while the vanished call held the slot")
    eq(fresh.stdout(), b"", "reply to the fresh caller while the slot is held")
    eq(end_lines(srv.err_lines()), [], "end lines while the vanished call is held")
    srv.stop()
    match(rf"pbx: end remote={re.escape(A_IP)}:\d+ in=6 out=6 ms=\d+ end=stopped",
          end_lines(srv.err_lines())[0], "the vanished call, ended by the stop")


# 20 calls from A, each read to its end; errors are recorded, not raised.
LEGIT = (
    "import json, socket, sys\n"
    "out = []\n"
    "for _ in range(20):\n"
    "    try:\n"
    "        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
    "        port, data = s.getsockname()[1], b''\n"
    "        while True:\n"
    "            b = s.recv(4096)\n"
    "            if not b:\n"
    "                break\n"
    "            data += b\n"
    "        s.close()\n"
    "        out.append([port, data.decode()])\n"
    "    except OSError as e:\n"
    "        out.append([None, str(e)])\n"
    "print(json.dumps(out))\n"
)


@test(params=[("event", ["-m", "event"]), ("fork", ["-m", "fork"])], timeout=60,
      exclusive=True)
def test_syn_flood_leaves_callers_served(t, model):
    # hping3 in A sends 20,000 SYNs from ports 1024 up; A drops the
    # SYN-ACKs to them (tcp dport < 30000), so no RST clears B's half-open
    # entries and B's SYN queue overflows into syncookies. 20 real calls
    # from A's ephemeral ports (32768 up) made meanwhile get the greeting.
    hping3 = need_tool("hping3", "hping3")
    lab = Lab(t)
    lab.sh(lab.a, "nft add chain inet lab in '{ type filter hook input priority 0;"
           " policy accept; }' && nft add rule inet lab in tcp dport '<' 30000 drop")
    srv = t.serve(f"{B_IP}:0", ["hello"], model, prefix=lab.b.prefix)
    before = lab.netstat_b()
    flood = t.spawn(lab.a.prefix + ["timeout", "30", hping3, "-q", "-S", "-p", str(srv.port),
                                    "-s", "1024", "-i", "u200", "-c", "20000", B_IP])
    # The queue is full once cookies go out; the calls start then.
    deadline = time.monotonic() + 15
    while (sent := lab.netstat_b()["SyncookiesSent"] - before["SyncookiesSent"]) < 1000:
        check(time.monotonic() < deadline and flood.alive(),
              f"B sent {sent} syncookies, expected 1000 or more before the calls"
              f" (hping3 {'still running' if flood.alive() else 'ended'})")
        time.sleep(0.05)
    r = t.run(lab.a.prefix + [PY, "-c", LEGIT, B_IP, str(srv.port)], timeout=30)
    after = lab.netstat_b()
    eq(r.rc, 0, f"status of the callers in A ({r.err.strip()})")
    got = json.loads(r.out)
    want = [[p, hello(A_IP, p).decode()] for p, _ in got]
    eq(got, want, "replies to the 20 callers during the flood")
    check(all(p >= 32768 for p, _ in got), f"callers' ports below 32768: {got}")
    # Each real call came in through a cookie: the queue stayed full
    # throughout, and the cookies A answered were exactly those 20.
    eq(after["SyncookiesRecv"] - before["SyncookiesRecv"], 20,
       "syncookies validated in B (the 20 calls)")
    eq(after["SyncookiesFailed"] - before["SyncookiesFailed"], 0, "syncookies that failed")
    eq(flood.wait(40), 0, "hping3 exit status")
    srv.check_alive("after the flood")
    srv.stop()
    eq(srv.served, 20, "connections served (the flood's SYNs are none)")
