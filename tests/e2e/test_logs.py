# SPDX-License-Identifier: MIT
"""--log-format: every stderr line of `pbx serve --log-format json` is one
JSON object with an RFC 3339 time, the listen line names the real address,
and a bad format is a one-line usage error (exit 2)."""
import datetime
import json
import re
import signal
import time

from harness import Failure, check, eq, hello, match, recv_all, short, test

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
