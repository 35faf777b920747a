# SPDX-License-Identifier: MIT
"""pbx connect: the stdin/stdout relay with half-close, --source, -v/-q/
--trace, a program on fds 6/7, and trying every address of a name."""
import os
import re
import time

from harness import (MODELS, PEERS, PY, Failure, base_env, check, check_env, env_dict, eq,
                     fmt_addr, free_port, load_json, match, read_to_eof, short, test)

MIB = 1 << 20


def same_bytes(got, want, what):
    if got == want:
        return
    n = min(len(got), len(want))
    first = next((i for i in range(n) if got[i] != want[i]), n)
    raise Failure(f"{what}: got {len(got)} bytes, expected {len(want)}; "
                  f"first difference at offset {first}")


def echo_handler(conn, peer, srv):
    n = 0
    while True:
        b = conn.recv(65536)
        if not b:
            break
        n += len(b)
        conn.sendall(b)
    srv.event("eof", n)


def say_and_close(text):
    def handler(conn, peer, srv):
        conn.sendall(text)
        srv.event("sent", len(text))
    return handler


@test(params=[("ipv4", "127.0.0.1", MIB), ("ipv6", "::1", 256 * 1024)])
def test_relay_binary(t, host, size):
    srv = t.py_server(echo_handler, host)
    data = os.urandom(size)
    p = t.pbx(["connect", fmt_addr(host, srv.port)], stdin=data)
    rc = p.wait(20)
    p.wait_eof(5)
    same_bytes(p.stdout(), data, "relayed echo")
    eq(rc, 0, "exit status")
    eq(p.err.decode(), "", "stderr")
    eq(srv.wait_event("eof"), size, "bytes the server read before EOF")


@test(params=MODELS)
def test_relay_to_pbx_serve_echo(t, model):
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model])
    data = os.urandom(MIB)
    r = t.run_pbx(["connect", f"127.0.0.1:{srv.port}"], stdin=data, timeout=20)
    same_bytes(r.out, data, "pbx connect | pbx serve echo")
    eq(r.rc, 0, "exit status")
    eq(r.err, "", "stderr")
    srv.stop()


@test()
def test_half_close_reply_after_eof(t):
    def handler(conn, peer, srv):
        data = read_to_eof(conn)
        srv.event("eof", data)
        conn.sendall(b"got %d bytes\n" % len(data))

    srv = t.py_server(handler)
    p = t.pbx(["connect", f"127.0.0.1:{srv.port}"], stdin="pipe")
    p.write(b"hello")
    time.sleep(0.5)  # an absence check: nothing may happen while stdin is open
    check(not srv.has_event("eof"), "the server saw EOF while pbx connect's stdin was open")
    eq(p.stdout(), b"", "stdout before stdin's end")
    check(p.alive(), "pbx connect exited while stdin was open and the peer waited")
    p.close_stdin()
    eq(srv.wait_event("eof", 5), b"hello", "what the server read before EOF")
    rc = p.wait(5)
    p.wait_eof(5)
    eq(p.stdout(), b"got 5 bytes\n", "reply after stdin's end")
    eq(rc, 0, "exit status")


@test(params=[("short", b"bye\n"), ("1mib", None)])
def test_peer_closes_first(t, payload):
    data = payload if payload is not None else os.urandom(MIB)
    srv = t.py_server(say_and_close(data))
    p = t.pbx(["connect", f"127.0.0.1:{srv.port}"], stdin="pipe")  # stdin stays open
    rc = p.wait(10)
    p.wait_eof(5)
    same_bytes(p.stdout(), data, "what the peer sent before closing")
    eq(rc, 0, "exit status when the peer closes first")
    eq(p.err.decode(), "", "stderr")


@test()
def test_source_address(t):
    srv = t.serve("127.0.0.1:0", ["hello"])
    r = t.run_pbx(["connect", "-s", "127.0.0.2", f"127.0.0.1:{srv.port}"], stdin=None)
    match(r"Hello, person from 127\.0\.0\.2:[1-9]\d*\n", r.out.decode(errors="replace"),
          "greeting")
    eq(r.rc, 0, "exit status")
    srv.stop()


@test()
def test_source_address_and_port(t):
    srv = t.serve("127.0.0.1:0", ["hello"])
    port = free_port("127.0.0.2")
    r = t.run_pbx(["connect", "--source", f"127.0.0.2:{port}", f"127.0.0.1:{srv.port}"],
                  stdin=None)
    eq(r.out, f"Hello, person from 127.0.0.2:{port}\n".encode(), "greeting")
    eq(r.rc, 0, "exit status")
    srv.stop()


@test()
def test_source_ipv6(t):
    srv = t.serve("[::1]:0", ["hello"])
    port = free_port("::1")
    r = t.run_pbx(["connect", "-s", f"[::1]:{port}", f"[::1]:{srv.port}"], stdin=None)
    eq(r.out, f"Hello, person from [::1]:{port}\n".encode(), "greeting")
    eq(r.rc, 0, "exit status")
    srv.stop()


@test(params=[("ipv4", "127.0.0.1"), ("ipv6", "::1")])
def test_verbose(t, host):
    srv = t.py_server(say_and_close(b"hi\n"), host)
    r = t.run_pbx(["connect", "-v", fmt_addr(host, srv.port)], stdin=None)
    eq(r.out, b"hi\n", "stdout")
    eq(r.rc, 0, "exit status")
    local = srv.peers[0][1]
    lines = r.err_lines()
    eq(len(lines), 2, f"stderr lines {lines}")
    eq(lines[0], f"pbx: connected remote={fmt_addr(host, srv.port)}"
       f" local={fmt_addr(host, local)}", "connected line")
    # The end: 3 bytes in, none out (stdin is /dev/null), a clean close.
    match(rf"pbx: end remote={re.escape(fmt_addr(host, srv.port))} in=3 out=0 ms=\d+ end=closed",
          lines[1], "end line")


@test()
def test_quiet(t):
    srv = t.py_server(say_and_close(b"hi\n"))
    r = t.run_pbx(["connect", "-q", f"127.0.0.1:{srv.port}"], stdin=None)
    eq(r.out, b"hi\n", "stdout")
    eq(r.err, "", "stderr with -q")
    eq(r.rc, 0, "exit status")


@test()
def test_trace(t):
    srv = t.py_server(say_and_close(b"hi\n"))
    r = t.run_pbx(["connect", "--trace", "-s", "127.0.0.2", f"127.0.0.1:{srv.port}"],
                  stdin=None)
    eq(r.out, b"hi\n", "stdout")
    eq(r.rc, 0, "exit status")
    lines = r.err_lines()
    others = [x for x in lines if not x.startswith("pbx: trace: ")]
    check(not others, f"stderr lines that are not trace lines: {others}")
    want = [r"pbx: trace: socket\(AF_INET, SOCK_STREAM\) = (\d+)",
            r"pbx: trace: bind\({fd}, 127\.0\.0\.2:0\)",
            rf"pbx: trace: connect\({{fd}}, 127\.0\.0\.1:{srv.port}\)"]
    i, fd = 0, None
    for pat in want:
        rx = pat.replace("{fd}", fd) if fd else pat
        while i < len(lines) and not re.fullmatch(rx, lines[i]):
            i += 1
        check(i < len(lines), f"no trace line /{rx}/ in order: {lines}")
        if fd is None:
            fd = re.fullmatch(rx, lines[i]).group(1)
        i += 1


# ---------------------------------------------------------------------------
# A program on fds 6 and 7
# ---------------------------------------------------------------------------

def pong_handler(conn, peer, srv):
    srv.event("got", read_to_eof(conn))
    conn.sendall(b"pong\n")


@test(params=[("ipv4", "127.0.0.1"), ("ipv6", "::1")])
def test_program(t, host):
    srv = t.py_server(pong_handler, host)
    env = base_env(PBX_E2E_MARK="kept as is")
    p = t.pbx(["connect", fmt_addr(host, srv.port), "--", PY,
               os.path.join(PEERS, "ucspi_dump.py"), "client", "--exit", "7"],
              stdin="pipe", env=env)
    rc = p.wait(10)
    p.wait_eof(5)
    out = p.stdout()
    eq(rc, 7, f"exit status (the program's; stderr {short(p.err.decode())})")
    r = load_json(out, "program report")
    eq(srv.wait_event("got"), b"ping\n", "what the server read")
    eq(r["received"], "pong\n", "what the program read from fd 6")
    eq(r["pid"], p.pid, "program pid (pbx execs it in place)")
    fds = r["fds"]
    eq(sorted(fds, key=int), ["0", "1", "2", "6", "7"], f"open fds in the program ({short(fds)})")
    check(fds["6"].startswith("socket:["), f"fd 6 is {fds['6']}, not a socket")
    eq(fds["7"], fds["6"], "fd 7 (the same socket as fd 6)")
    eq(fds["0"], os.readlink(f"/proc/self/fd/{p.p.stdin.fileno()}"), "fd 0 (pbx's stdin)")
    eq(fds["1"], os.readlink(f"/proc/self/fd/{p.p.stdout.fileno()}"), "fd 1 (pbx's stdout)")
    local_port = srv.peers[0][1]
    eq(r["socks"]["6"].get("peer"), [host, srv.port], "fd 6 peer address")
    eq(r["socks"]["6"].get("local"), [host, local_port], "fd 6 local address")
    eq(r["socks"]["6"].get("nonblocking"), False, "O_NONBLOCK on the program's socket")
    want = dict(env)
    want.update(PROTO="TCP", TCPLOCALIP=host, TCPLOCALPORT=str(local_port),
                TCPREMOTEIP=host, TCPREMOTEPORT=str(srv.port))
    check_env(env_dict(r["env"], "the program's environment"), want)
    eq(r["argv"], ["client", "--exit", "7"], "program arguments")


@test()
def test_program_killed_by_signal(t):
    srv = t.py_server(say_and_close(b""))
    p = t.pbx(["connect", f"127.0.0.1:{srv.port}", "--", "sh", "-c", "kill -9 $$"])
    rc = p.wait(10)
    eq(rc, -9, "status of pbx connect whose program killed itself (exec in place)")


@test()
def test_program_from_path(t):
    srv = t.py_server(say_and_close(b"from server\n"))
    r = t.run_pbx(["connect", f"127.0.0.1:{srv.port}", "--", "sh", "-c",
                   "cat <&6; echo \"$PROTO $TCPREMOTEIP $TCPREMOTEPORT\""], stdin=None)
    eq(r.out, f"from server\nTCP 127.0.0.1 {srv.port}\n".encode(), "program output")
    eq(r.rc, 0, "exit status")


# ---------------------------------------------------------------------------
# Names: every resolved address is tried (inside a namespace: no DNS leaves)
# ---------------------------------------------------------------------------

HOSTS = "::1 localhost\n127.0.0.1 localhost\n"
NO_DNS = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


@test(params=[("ipv4-only-server", "127.0.0.1:0", "127.0.0.1"),
              ("ipv6-only-server", "[::1]:0", "::1")])
def test_localhost_tries_each_address(t, addr, host):
    ns = t.netns(hosts=HOSTS, resolv=NO_DNS)
    srv = t.serve(addr, ["echo"], prefix=ns.prefix)
    r = t.run_pbx(["connect", "-v", f"localhost:{srv.port}"], stdin=b"ping",
                  prefix=ns.prefix)
    eq(r.out, b"ping", "echo through localhost")
    eq(r.rc, 0, f"exit status (stderr {short(r.err)})")
    lines = r.err_lines()
    eq(len(lines), 2, f"stderr lines {lines}")
    match(rf"pbx: end remote={re.escape(fmt_addr(host, srv.port))} in=4 out=4 ms=\d+ end=closed",
          lines[1], "end line")
    match(rf"pbx: connected remote={re.escape(fmt_addr(host, srv.port))}"
          rf" local={re.escape(fmt_addr(host, 0))[:-1]}[1-9]\d*", lines[0], "connected line")
    srv.stop()


@test(params=MODELS)
def test_program_to_pbx_serve_program(t, model):
    # Both ends pbx, both with a program: each side's UCSPI view mirrors the other's.
    srv = t.serve("127.0.0.1:0", ["--", "sh", "-c",
                                  'echo "$TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT"'],
                  ["-m", model])
    r = t.run_pbx(["connect", f"127.0.0.1:{srv.port}", "--", "sh", "-c",
                   'cat <&6; echo "$TCPLOCALIP $TCPLOCALPORT $TCPREMOTEIP $TCPREMOTEPORT"'],
                  stdin=None)
    eq(r.rc, 0, f"exit status ({short(r.err)})")
    lines = r.out.decode(errors="replace").splitlines()
    eq(len(lines), 2, f"output lines {lines}")
    match(rf"127\.0\.0\.1 [1-9]\d* 127\.0\.0\.1 {srv.port}", lines[1], "client program's view")
    eq(lines[0], lines[1], "server program's view (remote, local) vs client program's"
       " (local, remote)")
    srv.stop()


# ---------------------------------------------------------------------------
# Local ends that are not pipes, and local ends that fail
# ---------------------------------------------------------------------------

def redirected(redirect):
    """A launcher that starts pbx with a shell redirection ('< FILE')."""
    return ["sh", "-c", f'exec "$@" {redirect}', "sh"]


@test()
def test_stdin_regular_file(t):
    # A regular file cannot be polled: the stream layer reads it as always
    # ready, to its end, and the end is carried over as a FIN.
    srv = t.py_server(echo_handler)
    data = os.urandom(2 * MIB)
    path = os.path.join(t.tmpdir(), "stdin")
    with open(path, "wb") as f:
        f.write(data)
    p = t.pbx(["connect", "-v", f"127.0.0.1:{srv.port}"],
              launcher=redirected(f"< '{path}'"))
    rc = p.wait(20)
    p.wait_eof(5)
    same_bytes(p.stdout(), data, "a regular file relayed and echoed")
    eq(rc, 0, f"exit status (stderr {short(p.err.decode())})")
    eq(srv.wait_event("eof"), len(data), "bytes the server read before EOF")
    lines = p.err_lines()
    eq(len(lines), 2, f"stderr lines {lines}")
    match(rf"pbx: end remote=127\.0\.0\.1:{srv.port} in={len(data)} out={len(data)}"
          r" ms=\d+ end=closed", lines[1], "end line")


@test()
def test_stdout_reader_leaves(t):
    # The reader of stdout goes away mid-stream: pbx ends quietly, with
    # status 0 and a clean end (SIGPIPE ignored, EPIPE on stdout no error).
    def flood(conn, peer, srv):
        try:
            conn.sendall(os.urandom(8 * MIB))
        except OSError:
            pass

    srv = t.py_server(flood)
    launcher = ["sh", "-c", '{ "$@"; echo "rc=$?" >&2; } | head -c 10 >/dev/null', "sh"]
    p = t.pbx(["connect", "-v", f"127.0.0.1:{srv.port}"], launcher=launcher)
    eq(p.wait(20), 0, "status of the pipeline")
    p.wait_eof(5)
    lines = p.err_lines()
    eq(len(lines), 3, f"stderr lines {lines}")
    match(rf"pbx: end remote=127\.0\.0\.1:{srv.port} in=\d+ out=0 ms=\d+ end=closed",
          lines[1], "end line")
    eq(lines[2], "rc=0", "pbx's own status")


@test()
def test_stdout_fails_while_socket_write_queued(t):
    # The peer reads nothing, so bytes toward it wait in a queued write;
    # then writing its reply to stdout fails. The error is stdout's, and
    # the call ends at once, the queued write cancelled. (Under ASan a
    # relay buffer left behind by that write may show as a leak; whether
    # LeakSanitizer sees it depends on what the stack still holds.)
    def silent_then_reply(conn, peer, srv):
        time.sleep(0.5)  # let pbx fill the path toward us
        conn.sendall(b"hi\n")
        srv.event("sent")
        try:
            read_to_eof(conn)
        except OSError:
            pass

    srv = t.py_server(silent_then_reply)
    p = t.pbx(["connect", "-v", f"127.0.0.1:{srv.port}"], stdin=bytes(32 * MIB),
              launcher=redirected(">/dev/full"))
    rc = p.wait(20)
    p.wait_eof(5)
    eq(rc, 1, f"exit status (stderr {short(p.err.decode())})")
    lines = p.err_lines()
    eq(len(lines), 3, f"stderr lines {lines}")
    match(rf"pbx: end remote=127\.0\.0\.1:{srv.port} in=0 out=[1-9]\d* ms=\d+ end=error"
          r' error="No space left on device"', lines[1], "end line")
    eq(lines[2], "pbx: connect: relay stdin/stdout: No space left on device", "error line")
