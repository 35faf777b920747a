# SPDX-License-Identifier: MIT
"""--log-format: every stderr line of `pbx serve --log-format json` is one
JSON object with an RFC 3339 time, the listen line names the real address,
and a bad format is a one-line usage error (exit 2)."""
import datetime
import json
import re
import signal
import socket
import time

from harness import (Failure, check, eq, hello, match, recv_all, recv_exact,
                     short, test)

TS_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def json_line(line):
    """One stderr line as a JSON object, with its time checked."""
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise Failure(f"not a JSON line: {short(line)} ({e})")
    check(isinstance(obj, dict), f"not a JSON object: {short(line)}")
    match(TS_RE, obj.get("ts", ""), f"ts of {short(line)}")
    ts = datetime.datetime.strptime(obj["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    ts = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
    check(abs(ts - time.time()) < 60, f"ts is not now (UTC): {obj['ts']}")
    check(isinstance(obj.get("event"), str), f"no event in {short(line)}")
    return obj


def listen_address(obj):
    """HOST:PORT from the listen line."""
    if obj["event"] == "listen":
        return obj["local"]
    # Until the server emits EVENT_LISTEN, its readiness line is log_ready's
    # notice; drop this branch once it does.
    eq(obj["event"], "notice", "event of the first line")
    return match(r"listening on (.*)", obj["message"], "listen message").group(1)


@test()
def test_json_listen(t):
    srv = t.serve("127.0.0.1:0", ["hello"], ["--log-format", "json", "-v"],
                  wait_ready=False)
    _, m = srv.wait_line(r"\{.*\}", what="first JSON line")
    addr = listen_address(json_line(m.group(0)))
    port = int(match(r"127\.0\.0\.1:(\d+)", addr, "listen address").group(1))
    check(port != 0, "the listen line shows port 0, not the kernel's port")
    # The address named is the one that answers.
    s = t.dial("127.0.0.1", port)
    cport = s.getsockname()[1]
    eq(recv_all(s, 10, "greeting"), hello("127.0.0.1", cport), "greeting")
    s.close()
    srv.signal(signal.SIGTERM)
    eq(srv.wait(5), 0, "exit status after SIGTERM")
    srv.wait_eof(3)
    lines = srv.err_lines()
    check(len(lines) >= 2, f"expected a listen and a stop line: {lines}")
    for line in lines:
        json_line(line)


@test(params=["serve", "connect"])
def test_bad_format(t, cmd):
    r = t.run_pbx([cmd, "--log-format", "xml", "127.0.0.1:9"])
    eq(r.err_lines(), [f"pbx: {cmd}: bad log-format 'xml': expected text or json"],
       "stderr")
    eq(r.out, b"", "stdout")
    eq(r.rc, 2, "exit status")


@test()
def test_json_usage_error(t):
    # After the options, usage errors are in the chosen format too.
    r = t.run_pbx(["serve", "--log-format", "json", "127.0.0.1:99999"])
    eq(r.rc, 2, "exit status")
    lines = r.err_lines()
    eq(len(lines), 1, f"stderr lines {lines}")
    obj = json_line(lines[0])
    eq({k: v for k, v in obj.items() if k != "ts"},
       {"event": "error", "cmd": "serve",
        "message": "bad address '127.0.0.1:99999': port '99999' is out of "
                   "range 0-65535"}, "error object")


@test(params=["text", "json"])
def test_end_stopped(t, fmt):
    # A call still open when the server stops ends with end=stopped (no
    # error field) before the served line; the other call's end is its own.
    srv = t.serve("127.0.0.1:0", ["echo"], ["-v", "--log-format", fmt],
                  wait_ready=fmt == "text")
    port = srv.port
    if fmt == "json":
        _, m = srv.wait_line(r"\{.*\}", what="first JSON line")
        addr = listen_address(json_line(m.group(0)))
        port = int(match(r"127\.0\.0\.1:(\d+)", addr, "listen").group(1))
    done = t.dial("127.0.0.1", port)
    held = t.dial("127.0.0.1", port)
    dport, hport = done.getsockname()[1], held.getsockname()[1]
    done.sendall(b"abc")
    eq(recv_exact(done, 3, 5, "echo"), b"abc", "echo")
    done.shutdown(socket.SHUT_WR)
    eq(recv_all(done, 5, "end of the echo"), b"", "echo after FIN")
    held.sendall(b"hold")
    eq(recv_exact(held, 4, 5, "echo"), b"hold", "echo")
    srv.wait_line(rf".*\b{dport}\b.*closed.*", what="the first call's end")
    srv.signal(signal.SIGTERM)
    eq(srv.wait(5), 0, "exit status after SIGTERM")
    eq(recv_all(held, 5, "the held call after the stop"), b"", "held call")
    srv.wait_eof(3)
    lines = srv.err_lines()
    if fmt == "json":
        objs = [json_line(line) for line in lines]
        ends = [o for o in objs if o["event"] == "end"]
        held_end = [o for o in ends if o["remote"] == f"127.0.0.1:{hport}"]
        eq(len(held_end), 1, f"end objects of the held call in {lines}")
        eq({k: v for k, v in held_end[0].items() if k not in ("ts", "ms")},
           {"event": "end", "remote": f"127.0.0.1:{hport}", "in": 4,
            "out": 4, "end": "stopped"}, "the held call's end")
        done_end = [o for o in ends if o["remote"] == f"127.0.0.1:{dport}"]
        eq([o["end"] for o in done_end], ["closed"], "the first call's end")
        eq(objs[-1]["event"], "stop", "last event")
        eq(objs[-1]["count"], 2, "calls served")
        check(objs.index(held_end[0]) < len(objs) - 1, "end before stop")
    else:
        want = (rf"pbx: end remote=127\.0\.0\.1:{hport} in=4 out=4 "
                r"ms=\d+ end=stopped")
        found = [i for i, line in enumerate(lines) if re.fullmatch(want, line)]
        eq(len(found), 1, f"end=stopped lines in {lines}")
        eq(lines[-1], "pbx: served 2 connections", "last line")
        check(found[0] < len(lines) - 1, "end=stopped before the served line")
