# SPDX-License-Identifier: MIT
"""The PROXY protocol: pbx serve --proxy-protocol takes the client's
address from a trusted sender's header (the table of reliability.md (c),
every model, rules and limits on the real address), real HAProxy in
front of it, and pbx connect --send-proxy into real HAProxy."""
import os
import socket
import time

from harness import (check, eq, free_port, match, need_tool, recv_all, test,
                     wait_until)

MODELS = [("event", ["-m", "event"]), ("serial", ["-m", "serial"]),
          ("fork", ["-m", "fork"]), ("workers", ["--workers", "2"])]

# Says who called and where, then echoes what follows the header.
WHO = ["--", "sh", "-c", 'echo "$TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT"; '
       'exec cat']

V2_SIG = bytes.fromhex("0D0A0D0A000D0A515549540A")
V2_TCP4 = V2_SIG + bytes.fromhex("2111000C7F0000017F000001DC0401BB")
V2_TCP6 = V2_SIG + bytes.fromhex(
    "21210024" "20010DB8000000000000000000000001" "20010DB8000000000000000000000002"
    "C73801BB")
V2_LOCAL = V2_SIG + bytes.fromhex("20000000")


def proxied(t, opts=(), model=(), handler=WHO):
    return t.serve("127.0.0.1:0", handler,
                   ["-v", "--proxy-protocol", "--proxy-from", "127.0.0.1"]
                   + list(opts) + list(model))


def send(t, srv, data, source="127.0.0.1", pause=0.0, half_close=True, timeout=8):
    """Send data (byte by byte with pause), half-close, read until EOF."""
    s = t.dial("127.0.0.1", srv.port, source=(source, 0))
    try:
        if pause:
            for b in data:
                s.sendall(bytes([b]))
                time.sleep(pause)
        else:
            s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # refused early: what was read says so
    try:
        got = recv_all(s, timeout, "reply")
    except Exception:
        got = b"<reset>"
    s.close()
    t.socks.remove(s)
    return got


def who(line_ip, port, local_ip, local_port, rest=b""):
    return f"{line_ip} {port} {local_ip} {local_port}\n".encode() + rest


ACCEPTED = [
    ("v1-tcp4", b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\nhello",
     who("192.0.2.7", 1234, "192.0.2.9", 80, b"hello")),
    ("v1-tcp6", b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
     who("2001:db8::1", 1, "2001:db8::2", 2)),
    ("v2-tcp4", V2_TCP4 + b"x", who("127.0.0.1", 56324, "127.0.0.1", 443, b"x")),
    ("v2-tcp6", V2_TCP6, who("2001:db8::1", 51000, "2001:db8::2", 443)),
    ("two-headers", b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\n"
     b"PROXY TCP4 192.0.2.8 192.0.2.9 1 2\r\n",
     who("192.0.2.7", 1234, "192.0.2.9", 80,
         b"PROXY TCP4 192.0.2.8 192.0.2.9 1 2\r\n")),
]

# The header's sender is kept: LOCAL and UNKNOWN name no client.
KEPT = [
    ("v1-unknown", b"PROXY UNKNOWN\r\n"),
    ("v1-unknown-more", b"PROXY UNKNOWN 1.2.3.4 junk\r\n"),
    ("v2-local", V2_LOCAL),
]

REFUSED = [
    ("port-65536", b"PROXY TCP4 192.0.2.7 192.0.2.9 65536 80\r\n"),
    ("leading-zero", b"PROXY TCP4 192.0.2.07 192.0.2.9 1234 80\r\n"),
    ("lf-only", b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\n"),
    ("cr-only", b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\rxx"),
    ("tcp4-with-v6", b"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n"),
    ("no-crlf-200", b"PROXY TCP4 " + b"1" * 189),
    ("two-spaces", b"PROXY  TCP4 192.0.2.7 192.0.2.9 1234 80\r\n"),
    ("tab", b"PROXY\tTCP4 192.0.2.7 192.0.2.9 1234 80\r\n"),
    ("lower-case", b"proxy TCP4 192.0.2.7 192.0.2.9 1234 80\r\n"),
    ("v2-udp4-short", V2_SIG + bytes.fromhex("21120000")),
    ("v2-short-len", V2_SIG + bytes.fromhex("211100047F000001")),
    ("v2-tcp6-short", V2_SIG + bytes.fromhex("21210010") + bytes(16)),
    ("v2-version-1", V2_SIG + bytes.fromhex("1111000C") + bytes(12)),
    ("v2-command-2", V2_SIG + bytes.fromhex("2211000C") + bytes(12)),
    ("v2-family-4", V2_SIG + bytes.fromhex("2141000C") + bytes(12)),
    ("v2-len-65535-eof", V2_SIG + bytes.fromhex("2111FFFF") + bytes(12)),
    ("v2-tlv-overrun", V2_SIG + bytes.fromhex("21110010") + bytes(12) + bytes.fromhex("04000A00")),
    ("not-a-header", b"GET / HTTP/1.1\r\n\r\n"),
]


@test(params=[(n, d, w) for n, d, w in ACCEPTED])
def test_header_accepted(t, data, want):
    srv = proxied(t)
    eq(send(t, srv, data), want, "what the program saw, then the payload")
    srv.stop()


@test(params=[(n, d) for n, d in KEPT])
def test_header_keeps_the_sender(t, data):
    srv = proxied(t)
    got = send(t, srv, data)
    match(rb"127\.0\.0\.1 \d+ 127\.0\.0\.1 %d\n" % srv.port, got, "the sender's own addresses")
    srv.stop()


@test(params=[(n, d) for n, d in REFUSED])
def test_header_refused(t, data):
    srv = proxied(t)
    got = send(t, srv, data)
    check(got in (b"", b"<reset>"), f"a refused header got a reply: {got!r}")
    wait_until(lambda: any(l.startswith("pbx: reject ") for l in srv.err_lines()), 3)
    lines = [l for l in srv.err_lines() if l.startswith("pbx: reject ")]
    eq(len(lines), 1, f"reject lines ({lines})")
    check(not any(l.startswith("pbx: start ") for l in srv.err_lines()),
          "a program started for a refused header")
    srv.stop()


@test()
def test_header_in_one_byte_pieces(t):
    # Split into 1-byte segments over about 1.5 s: still one header.
    srv = proxied(t)
    data = b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\n"
    eq(send(t, srv, data, pause=0.035), who("192.0.2.7", 1234, "192.0.2.9", 80),
       "a header sent byte by byte")
    srv.stop()


@test()
def test_header_must_come_in_time(t):
    srv = proxied(t, ["--proxy-timeout", "1"])
    s = t.dial("127.0.0.1", srv.port)
    s.sendall(b"PROXY TCP4 192.0.2.7")  # and nothing more
    start = time.monotonic()
    try:
        got = recv_all(s, 5, "a stalled header")
    except Exception:
        got = b""  # closed with unread bytes: a reset is a close too
    eq(got, b"", "reply to a stalled header")
    took = time.monotonic() - start
    check(0.8 <= took <= 2.0, f"a stalled header was closed after {took:.2f} s")
    wait_until(lambda: any("not in time" in l for l in srv.err_lines()), 3)
    srv.stop()


@test()
def test_untrusted_sender_is_served_as_it_is(t):
    # A header from a sender that is not trusted is the caller's payload.
    srv = proxied(t, handler=["echo"])
    data = b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\n"
    eq(send(t, srv, data, source="127.0.0.2"), data, "echoed as payload")
    wait_until(lambda: any(l.startswith("pbx: accept ") for l in srv.err_lines()), 3)
    match(r"pbx: accept remote=127\.0\.0\.2:\d+ local=\S+",
          [l for l in srv.err_lines() if l.startswith("pbx: accept ")][0], "accept line")
    srv.stop()


@test()
def test_required_refuses_others(t):
    srv = proxied(t, ["--proxy-required"], handler=["echo"])
    data = b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\nhi"
    check(send(t, srv, data, source="127.0.0.2") in (b"", b"<reset>"),
          "an untrusted sender was served")
    eq(send(t, srv, data), b"hi", "the trusted proxy's call")
    srv.stop()


@test()
def test_header_not_read_without_the_option(t):
    srv = t.serve("127.0.0.1:0", ["echo"], [])
    data = b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\n"
    eq(send(t, srv, data), data, "a listener without PROXY passes it on")
    srv.stop()


@test(params=MODELS)
def test_every_model_sees_the_client(t, opts):
    srv = proxied(t, model=opts)
    data = b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\nbytes"
    eq(send(t, srv, data), who("192.0.2.7", 1234, "192.0.2.9", 80, b"bytes"), "program")
    wait_until(lambda: any(l.startswith("pbx: accept ") for l in srv.err_lines()), 3)
    match(r"pbx: accept remote=192\.0\.2\.7:1234 via=127\.0\.0\.1:\d+ local=192\.0\.2\.9:80"
          r"( pid=\d+)?", [l for l in srv.err_lines() if l.startswith("pbx: accept ")][0],
          "accept line")
    srv.stop()


@test(params=MODELS[:3])
def test_greeting_sees_the_client(t, opts):
    srv = proxied(t, model=opts, handler=["hello"])
    got = send(t, srv, b"PROXY TCP4 192.0.2.7 192.0.2.9 1234 80\r\n")
    eq(got, b"Hello, person from 192.0.2.7:1234\n", "greeting")
    srv.stop()


@test()
def test_rules_and_limits_see_the_client(t):
    rules = os.path.join(t.tmpdir(), "rules")
    with open(rules, "w") as f:
        f.write("192.0.2.0/24 allow\n192.0.2.66 deny\n")
    hold = ["--", "sh", "-c", 'echo in; exec cat >/dev/null']
    srv = proxied(t, ["--rules", rules, "--max-per-ip", "1"], handler=hold)
    hdr = b"PROXY TCP4 %s 192.0.2.9 1234 80\r\n"
    eq(send(t, srv, hdr % b"192.0.2.66"), b"", "a client the rules deny")
    # The proxy itself (127.0.0.1) has no rule: only the client counts.
    s = t.dial("127.0.0.1", srv.port)
    s.sendall(hdr % b"192.0.2.7")
    s.settimeout(5)
    eq(s.recv(16), b"in\n", "first call of 192.0.2.7")
    eq(send(t, srv, hdr % b"192.0.2.7"), b"", "second call of 192.0.2.7: over its limit")
    other = t.dial("127.0.0.1", srv.port)
    other.sendall(hdr % b"192.0.2.8")
    other.settimeout(5)
    eq(other.recv(16), b"in\n", "another client of the same proxy")
    # The log lines are read from a pipe: wait for them, not for the calls.
    srv.wait_line(r"pbx: deny remote=192\.0\.2\.66:1234 via=127\.0\.0\.1:\d+ .*",
                  what="the deny line for the client")
    srv.wait_line(r"pbx: reject remote=192\.0\.2\.7:1234 via=127\.0\.0\.1:\d+ .*",
                  what="the reject line for the client")
    srv.stop()


BAD = [
    ("no-from", ["--proxy-protocol"], "pbx: serve: --proxy-protocol needs --proxy-from "
     "CIDR[,CIDR...]: the senders whose header is believed"),
    ("from-alone", ["--proxy-from", "127.0.0.1"], "pbx: serve: --proxy-from needs "
     "--proxy-protocol"),
    ("bad-from", ["--proxy-protocol", "--proxy-from", "127.0.0.1,10.0.0.0/33"],
     "pbx: serve: bad proxy-from '127.0.0.1,10.0.0.0/33': bad prefix length '/33' "
     "(expected 0 to 32)"),
    ("bad-version", ["--proxy-protocol=v3", "--proxy-from", "::1"],
     "pbx: serve: bad proxy-protocol 'v3': expected v1 or v2 (or nothing: both)"),
    ("required-alone", ["--proxy-required"], "pbx: serve: --proxy-required needs "
     "--proxy-protocol"),
]


@test(params=BAD)
def test_bad_proxy_options(t, opts, message):
    r = t.run_pbx(["serve"] + opts + ["127.0.0.1:0"])
    eq(r.rc, 2, "exit status")
    eq(r.err_lines(), [message], "stderr")


# ---- real HAProxy ------------------------------------------------------

def haproxy(t, frontend, backend):
    need_tool("haproxy", "haproxy")
    port = free_port()
    cfg = os.path.join(t.tmpdir(), f"haproxy-{port}.cfg")
    with open(cfg, "w") as f:
        f.write("global\n  maxconn 100\n"
                "defaults\n  mode tcp\n  timeout connect 5s\n"
                "  timeout client 10s\n  timeout server 10s\n"
                f"frontend f\n  bind 127.0.0.1:{port} {frontend}\n  default_backend b\n"
                f"backend b\n  server s {backend}\n")
    t.spawn(["haproxy", "-f", cfg, "-db"])

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    check(wait_until(up, 10), "haproxy did not start listening")
    return port


@test(params=[("send-proxy", "send-proxy"), ("send-proxy-v2", "send-proxy-v2")])
def test_haproxy_in_front(t, option):
    srv = proxied(t)
    port = haproxy(t, "", f"127.0.0.1:{srv.port} {option}")
    s = t.dial("127.0.0.1", port, source=("127.0.0.2", 0))
    s.sendall(b"through haproxy")
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s, 10, "reply through haproxy")
    cport = s.getsockname()[1]
    eq(got, who("127.0.0.2", cport, "127.0.0.1", port, b"through haproxy"),
       "the client's address in the program's environment")
    # (haproxy's readiness probe came first, as a client of 127.0.0.1.)
    line = f"pbx: accept remote=127.0.0.2:{cport} "
    wait_until(lambda: any(l.startswith(line) for l in srv.err_lines()), 3)
    match(rf"pbx: accept remote=127\.0\.0\.2:{cport} via=127\.0\.0\.1:\d+ "
          rf"local=127\.0\.0\.1:{port}",
          [l for l in srv.err_lines() if l.startswith(line)][0], "accept line")
    srv.stop()


@test(params=[("v1", "v1"), ("v2", "v2")])
def test_connect_sends_proxy_to_haproxy(t, version):
    # pbx connect --send-proxy -> haproxy accept-proxy -> send-proxy-v2 ->
    # pbx serve: the address pbx connect named reaches the program.
    srv = proxied(t)
    port = haproxy(t, "accept-proxy", f"127.0.0.1:{srv.port} send-proxy-v2")
    r = t.run_pbx(["connect", "--send-proxy", version, "--proxy-source", "192.0.2.7:4321",
                   f"127.0.0.1:{port}"], stdin=b"named")
    eq(r.rc, 0, f"pbx connect exit status ({r.err})")
    eq(r.out, who("192.0.2.7", 4321, "127.0.0.1", port, b"named"), "what the program saw")
    # Without --proxy-source, the header names the connection's own ends.
    r = t.run_pbx(["connect", "--send-proxy", version, f"127.0.0.1:{port}"], stdin=b"own")
    eq(r.rc, 0, "pbx connect exit status")
    match(rb"127\.0\.0\.1 \d+ 127\.0\.0\.1 %d\nown" % port, r.out, "own addresses")
    srv.stop()


@test()
def test_connect_send_proxy_to_pbx(t):
    srv = proxied(t)
    r = t.run_pbx(["connect", "--send-proxy", "v1", "--proxy-source", "[2001:db8::5]:99",
                   f"127.0.0.1:{srv.port}"], stdin=b"")
    eq(r.rc, 0, "exit status")
    # A TCP6 client with a TCP4 destination: both go as IPv6, the mapped
    # one shown as the IPv4 address it is.
    eq(r.out, who("2001:db8::5", 99, "127.0.0.1", srv.port), "what the program saw")
    srv.stop()


@test(params=[("version", ["--send-proxy", "v3"], "pbx: connect: bad send-proxy 'v3': "
               "expected v1 or v2"),
              ("source-alone", ["--proxy-source", "1.2.3.4:5"],
               "pbx: connect: --proxy-source needs --send-proxy v1|v2"),
              ("source-name", ["--send-proxy", "v1", "--proxy-source", "example.com:5"],
               "pbx: connect: bad proxy-source 'example.com:5': expected a numeric "
               "IP:PORT or [IPV6]:PORT, not a name")])
def test_bad_send_proxy(t, opts, message):
    r = t.run_pbx(["connect"] + opts + ["127.0.0.1:9"])
    eq(r.rc, 2, "exit status")
    eq(r.err_lines(), [message], "stderr")
