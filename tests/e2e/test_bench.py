# SPDX-License-Identifier: MIT
"""pbx bench: its counts agree with the server's, its JSON has every
field, and failures land in the right kind (refused, reset, timeout,
mismatch, short)."""
import json
import os
import socket
import struct
import time

from harness import check, eq, match, test

FIELDS = {"address": str, "seconds": float, "concurrency": int, "connections": int,
          "connections_per_s": float, "rounds": int, "rounds_per_s": float,
          "bytes_in": int, "bytes_out": int, "bytes_in_per_s": float,
          "bytes_out_per_s": float, "latency_us": dict, "errors": dict,
          "errors_total": int}
KINDS = ["refused", "reset", "timeout", "unreachable", "address", "descriptors",
         "mismatch", "short", "other"]


def bench(t, args, rc=0, timeout=30):
    r = t.run_pbx(["bench", "--json"] + args, timeout=timeout)
    eq(r.rc, rc, f"pbx bench exit status (stderr {r.err!r})")
    try:
        return json.loads(r.out.decode())
    except ValueError:
        raise AssertionError(f"pbx bench --json printed {r.out!r}")


def only_errors(report, kind, n):
    want = {k: 0 for k in KINDS}
    want[kind] = n
    eq(report["errors"], want, "errors by kind")
    eq(report["errors_total"], n, "errors_total")


@test(timeout=60)
def test_bench_counts_agree_with_server(t):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-m", "event"])
    addr = f"127.0.0.1:{srv.port}"
    rep = bench(t, ["-n", "500", "-c", "10", addr])
    srv.stop()
    for k, typ in FIELDS.items():
        check(isinstance(rep.get(k), typ) or (typ is float and isinstance(rep.get(k), int)),
              f"field {k}: {rep.get(k)!r} is not {typ.__name__}")
    eq(sorted(rep["latency_us"]), sorted(["min", "p50", "p90", "p99", "p99_9", "max"]),
       "latency fields")
    lat = rep["latency_us"]
    check(0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"]
          <= lat["max"], f"latencies out of order: {lat}")
    eq(rep["address"], addr, "address")
    eq(rep["connections"], 500, "connections")
    eq(rep["rounds"], 500, "rounds")
    eq(srv.served, 500, "connections the server counted")
    only_errors(rep, "refused", 0)
    # Every greeting is "Hello, person from 127.0.0.1:PORT\n" with a
    # five-digit ephemeral port (32768-60999 here).
    eq(rep["bytes_in"], 500 * len("Hello, person from 127.0.0.1:12345\n"), "bytes_in")
    eq(rep["bytes_out"], 0, "bytes_out")
    check("held" not in rep, "held reported without --hold")


@test()
def test_bench_text_report(t):
    srv = t.serve("127.0.0.1:0", ["hello"])
    r = t.run_pbx(["bench", "-n", "50", "-c", "5", f"127.0.0.1:{srv.port}"])
    eq(r.rc, 0, "exit status")
    lines = r.out.decode().splitlines()
    match(rf"pbx bench 127\.0\.0\.1:{srv.port}: \d+\.\d\d s, 5 in flight", lines[0], "title")
    match(r"  connections   50   [\d.]+/s", lines[1], "connections line")
    check(any(x.startswith("  latency       p50 ") for x in lines), f"latency line in {lines}")
    eq(lines[-1], "  errors        0", "errors line")
    eq(r.err, "", "stderr when it is not a terminal (no progress line)")
    srv.stop()


@test()
def test_bench_echo_rounds(t):
    srv = t.serve("127.0.0.1:0", ["echo"])
    payload = os.path.join(t.tmpdir(), "4k.bin")
    with open(payload, "wb") as f:
        f.write(os.urandom(4096))
    rep = bench(t, ["-n", "20", "-c", "4", "--send", "@" + payload, "--expect-bytes", "4096",
                    "--rounds", "10", f"127.0.0.1:{srv.port}"])
    eq(rep["connections"], 20, "connections")
    eq(rep["rounds"], 200, "round trips")
    eq(rep["bytes_out"], 200 * 4096, "bytes_out")
    eq(rep["bytes_in"], 200 * 4096, "bytes_in")
    only_errors(rep, "short", 0)
    srv.stop()
    eq(srv.served, 20, "connections the server counted")


@test()
def test_bench_send_until_eof(t):
    # Without --expect-bytes the request is followed by a half-close, so
    # echo ends each call and the reply is read to EOF.
    srv = t.serve("127.0.0.1:0", ["echo"])
    rep = bench(t, ["-n", "30", "-c", "3", "--send", r"ping\r\n", f"127.0.0.1:{srv.port}"])
    eq((rep["connections"], rep["bytes_in"], rep["bytes_out"]), (30, 180, 180),
       "connections, bytes in, bytes out")
    srv.stop()


@test()
def test_bench_expect(t):
    srv = t.serve("127.0.0.1:0", ["hello"])
    addr = f"127.0.0.1:{srv.port}"
    rep = bench(t, ["-n", "40", "--expect", "Hello, person from 127.0.0.1:", addr])
    eq(rep["connections"], 40, "connections with a matching reply")
    only_errors(rep, "mismatch", 0)
    rep = bench(t, ["-n", "40", "--expect", "Goodbye", addr], rc=1)
    eq(rep["connections"], 0, "connections with a wrong reply")
    only_errors(rep, "mismatch", 40)
    # A reply shorter than --expect is a mismatch too.
    rep = bench(t, ["-n", "10", "--expect", "Hello, person from 127.0.0.1:12345\nmore", addr],
                rc=1)
    only_errors(rep, "mismatch", 10)
    srv.stop()


@test()
def test_bench_short_reply(t):
    srv = t.serve("127.0.0.1:0", ["hello"])
    rep = bench(t, ["-n", "25", "--expect-bytes", "100", f"127.0.0.1:{srv.port}"], rc=1)
    only_errors(rep, "short", 25)
    srv.stop()


@test()
def test_bench_reset_by_server(t):
    def reset(conn, peer, srv):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    py = t.py_server(reset)
    rep = bench(t, ["-n", "30", "-c", "3", f"127.0.0.1:{py.port}"], rc=1)
    eq(rep["connections"], 0, "connections")
    only_errors(rep, "reset", 30)


@test()
def test_bench_refused(t):
    closed = t.listener(listen=False)  # bound, not listening: refuses
    rep = bench(t, ["-n", "20", "-c", "2", f"127.0.0.1:{closed.getsockname()[1]}"], rc=1)
    only_errors(rep, "refused", 20)


@test()
def test_bench_timeout(t):
    def silent(conn, peer, srv):
        time.sleep(3)
    py = t.py_server(silent)
    start = time.monotonic()
    rep = bench(t, ["-n", "4", "-c", "4", "--timeout", "0.3", f"127.0.0.1:{py.port}"], rc=1)
    only_errors(rep, "timeout", 4)
    check(time.monotonic() - start < 2.5, "timeouts took too long")


@test()
def test_bench_sources(t):
    srv = t.serve("127.0.0.1:0", ["hello"], ["-v"])
    rep = bench(t, ["-n", "40", "-c", "4", "--source", "127.0.0.2,127.0.0.3",
                    f"127.0.0.1:{srv.port}"])
    eq(rep["connections"], 40, "connections")
    srv.stop()
    remotes = [match(r"pbx: accept remote=([\d.]+):\d+ .*", x, "accept line").group(1)
               for x in srv.err_lines() if x.startswith("pbx: accept ")]
    eq(sorted(set(remotes)), ["127.0.0.2", "127.0.0.3"], "source addresses seen")
    eq(remotes.count("127.0.0.2"), 20, "calls from the first source")


@test(timeout=60)
def test_bench_hold(t):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-c", "1000"])
    rep = bench(t, ["--hold", "-c", "200", "-d", "1", f"127.0.0.1:{srv.port}"])
    eq((rep["held"], rep["dropped"]), (200, 0), "held and dropped")
    srv.stop()
    eq(srv.served, 200, "connections the server counted")
    # With a server that lets only 50 stand, the rest time out or wait.
    srv = t.serve("127.0.0.1:0", ["discard"], ["-c", "50"])
    rep = bench(t, ["--hold", "-c", "80", "-d", "1", "--timeout", "5",
                    f"127.0.0.1:{srv.port}"])
    # Connections beyond -c 50 still complete in the kernel's backlog,
    # so they stand too: held counts what the network accepted.
    eq(rep["held"] + rep["dropped"], 80, "every connection accounted for")
    srv.stop()


@test()
def test_bench_usage(t):
    cases = [
        (["--rounds", "2", "127.0.0.1:1"], "pbx: bench: --rounds other than 1 needs "
         "--expect-bytes (a reply must end before the next round)"),
        (["-c", "0", "127.0.0.1:1"], "pbx: bench: bad connections '0': expected a number "
         "from 1 to 1000000"),
        ([], "pbx: bench: missing ADDRESS (see pbx bench --help)"),
        (["127.0.0.1:1", "x"], "pbx: bench: one ADDRESS only (see pbx bench --help)"),
        (["--send", r"\q", "127.0.0.1:1"], r"pbx: bench: bad send '\q': bad escape (use "
         r"\r \n \t \\ \0 or \xHH)"),
        (["--source", "nope", "127.0.0.1:1"], "pbx: bench: bad source 'nope': expected an "
         "IP address"),
        (["-d", "0", "127.0.0.1:1"], "pbx: bench: bad duration '0': expected seconds, "
         "more than 0 and at most 86400"),
        ([":80"], "pbx: bench: bad address ':80': host is missing"),
        (["127.0.0.1:0"], "pbx: bench: bad address '127.0.0.1:0': port 0 cannot be called"),
        (["--source", "127.0.0.1", "[::1]:80"], "pbx: bench: --source and ADDRESS must "
         "both be IPv4 or both IPv6"),

    ]
    for args, line in cases:
        r = t.run_pbx(["bench"] + args)
        eq((r.rc, r.err_lines()), (2, [line]), f"pbx bench {' '.join(args)}")


@test(timeout=30)
def test_bench_progress_on_terminal(t):
    # On a terminal, stderr gets a live line each second, rewritten in
    # place with \r, and a newline at the end; stdout keeps the report.
    import pty
    import subprocess
    srv = t.serve("127.0.0.1:0", ["hello"])
    master, slave = pty.openpty()
    from harness import PBX, base_env
    p = subprocess.Popen([PBX, "bench", "-d", "2.2", "-c", "4", f"127.0.0.1:{srv.port}"],
                         stdout=subprocess.PIPE, stderr=slave, env=base_env())
    os.close(slave)
    out, _ = p.communicate(timeout=20)
    chunks = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks += data
    os.close(master)
    eq(p.returncode, 0, "exit status")
    text = chunks.decode(errors="replace")
    frames = [x for x in text.split("\r") if x.strip()]
    check(len(frames) >= 3, f"progress frames on the terminal: {text!r}")
    for f in frames:
        match(r"\s*\d+\.\d s\s+[\d.]+ conn/s\s+p99 .*errors \d+\s*(\r?\n)?", f, "progress line")
    check(text.rstrip(" ").endswith("\n"), f"progress does not end its line: {text[-40:]!r}")
    check(out.startswith(b"pbx bench "), f"report on stdout: {out[:60]!r}")
    srv.stop()


@test(timeout=30)
def test_bench_duration_counts(t):
    # A timed run ends with calls in flight: they are reported as cut_off,
    # and the server's count lies between the two.
    srv = t.serve("127.0.0.1:0", ["hello"])
    rep = bench(t, ["-d", "1", "-c", "20", f"127.0.0.1:{srv.port}"])
    srv.stop()
    check(0.9 < rep["seconds"] < 1.5, f"measured {rep['seconds']} s for -d 1")
    check(rep["connections"] > 100, f"only {rep['connections']} calls in 1 s")
    check(0 <= rep["cut_off"] <= 20, f"cut_off {rep['cut_off']} with -c 20")
    check(rep["connections"] <= srv.served <= rep["connections"] + rep["cut_off"],
          f"server counted {srv.served}; bench {rep['connections']} done + "
          f"{rep['cut_off']} cut off")
    only_errors(rep, "refused", 0)


@test()
def test_bench_warmup_zero(t):
    # --help says the default warmup is 0: saying so is not an error.
    srv = t.serve("127.0.0.1:0", ["hello"])
    for value in ("0", "0.0"):
        rep = bench(t, ["--warmup", value, "-n", "20", "-c", "2", f"127.0.0.1:{srv.port}"])
        eq(rep["connections"], 20, f"connections with --warmup {value}")
    srv.stop()
    for bad in ("-1", "x", "86401"):
        r = t.run_pbx(["bench", "--warmup", bad, "127.0.0.1:1"])
        eq((r.rc, r.err_lines()),
           (2, [f"pbx: bench: bad warmup '{bad}': expected seconds, from 0 to 86400"]),
           f"pbx bench --warmup {bad}")


def echo_payload(t):
    path = os.path.join(t.tmpdir(), "4k.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(4096))
    return "@" + path


@test(timeout=40)
def test_bench_rounds_zero(t):
    # The README's echo example: connections carry rounds until the time is
    # up and never complete; the round trips are the result (exit 0).
    srv = t.serve("127.0.0.1:0", ["echo"])
    args = ["-c", "4", "--send", echo_payload(t), "--expect-bytes", "4096", "--rounds", "0",
            "-d", "1", f"127.0.0.1:{srv.port}"]
    rep = bench(t, args)
    eq((rep["connections"], rep["open"]), (0, 4), "connections completed, open at the end")
    check(rep["rounds"] > 100, f"only {rep['rounds']} round trips in 1 s")
    only_errors(rep, "short", 0)
    check(rep["rounds"] * 4096 <= rep["bytes_in"] < (rep["rounds"] + 4) * 4096,
          f"bytes_in {rep['bytes_in']} for {rep['rounds']} round trips of 4096")
    r = t.run_pbx(["bench"] + args, timeout=30)
    eq(r.rc, 0, f"text report exit status (stderr {r.err!r})")
    lines = r.out.decode().splitlines()
    match(r"  round trips   [1-9]\d*   [\d.]+/s", lines[1], "round trips line")
    eq(lines[2], "  connections   4 open at the end", "connections line")
    eq(lines[-1], "  errors        0", "errors line")
    srv.stop()


@test(timeout=40)
def test_bench_rounds_zero_with_errors(t):
    # A server that ends each connection after 3 rounds: with --rounds 0
    # that is a lost connection (short), so the run fails, round trips or not.
    def three_rounds(conn, peer, srv):
        for _ in range(3):
            data = b""
            while len(data) < 4:
                b = conn.recv(4 - len(data))
                if not b:
                    return
                data += b
            conn.sendall(data)
    py = t.py_server(three_rounds)
    rep = bench(t, ["-c", "2", "--send", "ping", "--expect-bytes", "4", "--rounds", "0",
                    "-d", "1", f"127.0.0.1:{py.port}"], rc=1)
    check(rep["rounds"] > 0, "no round trips")
    check(rep["errors"]["short"] > 0, f"no short errors: {rep['errors']}")


def unreachable_netns(t):
    """A prefix running pbx in a new user+net namespace (loopback down)."""
    from harness import Skip, need_tool
    need_tool("unshare", "util-linux")
    r = t.run(["unshare", "-rn", "true"])
    if r.rc != 0:
        raise Skip(f"unshare -rn does not work here: {r.err.strip()}")
    return ["unshare", "-rn"]


@test(timeout=30)
def test_bench_unreachable_paced(t):
    # With no route, connect fails at once (ENETUNREACH). Each slot must
    # wait before its next attempt (10 ms), not retry in a spin (300,000
    # attempts in 2 s before).
    prefix = unreachable_netns(t)
    r = t.run_pbx(["bench", "--json", "-c", "2", "-d", "1", "10.0.0.1:80"], prefix=prefix,
                  timeout=20)
    eq(r.rc, 1, f"exit status (stderr {r.err!r})")
    rep = json.loads(r.out.decode())
    n = rep["errors"]["unreachable"]
    check(20 <= n <= 400, f"{n} unreachable attempts by 2 slots in 1 s (10 ms apart: ~200)")
    only_errors(rep, "unreachable", n)
    eq(rep["connections"], 0, "connections")
