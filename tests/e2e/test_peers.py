# SPDX-License-Identifier: MIT
"""pbx against real peers: netcat-openbsd, socat, curl, python's http.server
and ucspi-tcp's tcpclient/tcpserver (whose UCSPI variables must agree with
pbx's on both ends)."""
import http.server
import os
import re
import socketserver
import threading

from harness import (PEERS, PY, Skip, check, eq, match, need_tool, short, test)

MIB = 1 << 20


def openbsd_nc():
    nc = need_tool("nc", "netcat-openbsd")
    t_help = os.popen(f"{nc} -h 2>&1").read()
    if "-N" not in t_help:
        raise Skip("nc is not OpenBSD netcat (no -N) (Debian package: netcat-openbsd)")
    return nc


@test()
def test_nc_hello(t):
    nc = openbsd_nc()
    srv = t.serve("127.0.0.1:0", ["hello"], ["-v"])
    r = t.run([nc, "-n", "-N", "127.0.0.1", str(srv.port)], stdin=b"")
    m = match(r"Hello, person from 127\.0\.0\.1:(\d+)\n", r.out.decode(errors="replace"),
              "greeting to nc")
    eq(r.rc, 0, f"nc exit status ({short(r.err)})")
    srv.wait_line(rf"pbx: accept remote=127\.0\.0\.1:{m.group(1)} local=127\.0\.0\.1:{srv.port}"
                  r"( pid=\d+)?$", what="accept line with nc's port")
    srv.stop()


@test(params=["serial", "fork"])
def test_nc_echo(t, model):
    nc = openbsd_nc()
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model])
    data = os.urandom(256 * 1024)
    r = t.run([nc, "-n", "-N", "127.0.0.1", str(srv.port)], stdin=data, timeout=20)
    eq(len(r.out), len(data), "bytes echoed to nc")
    check(r.out == data, "echo to nc differs from what it sent")
    eq(r.rc, 0, f"nc exit status ({short(r.err)})")
    srv.stop()


@test(params=["serial", "fork"])
def test_socat_echo(t, model):
    socat = need_tool("socat", "socat")
    srv = t.serve("127.0.0.1:0", ["echo"], ["-m", model])
    data = os.urandom(MIB)
    r = t.run([socat, "-t", "10", "-", f"TCP:127.0.0.1:{srv.port}"], stdin=data, timeout=20)
    eq(len(r.out), len(data), "bytes echoed to socat")
    check(r.out == data, "echo to socat differs from what it sent")
    eq(r.rc, 0, f"socat exit status ({short(r.err)})")
    srv.stop()


@test()
def test_socat_hello_ipv6(t):
    socat = need_tool("socat", "socat")
    srv = t.serve(":0", ["hello"], ["-v"])
    r = t.run([socat, "-u", f"TCP6:[::1]:{srv.port}", "-"], stdin=None)
    m = match(r"Hello, person from \[::1\]:(\d+)\n", r.out.decode(errors="replace"),
              "greeting to socat over IPv6")
    eq(r.rc, 0, f"socat exit status ({short(r.err)})")
    srv.wait_line(rf"pbx: accept remote=\[::1\]:{m.group(1)} local=\[::1\]:{srv.port}"
                  r"( pid=\d+)?$", what="accept line with socat's port")
    srv.stop()


# ---------------------------------------------------------------------------
# HTTP: the paper's request through pbx connect; curl against a UCSPI program
# ---------------------------------------------------------------------------

INDEX = b"<html><body>pbx e2e: the paper's GET</body></html>\n"


def http_server(t):
    d = os.path.join(t.tmpdir(), "www")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "index.html"), "wb") as f:
        f.write(INDEX)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=d, **kw)

        def log_message(self, *a):
            pass

    class NoLookup(http.server.ThreadingHTTPServer):
        def server_bind(self):
            # HTTPServer.server_bind would look the address up (getfqdn).
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = self.server_address[:2]

    httpd = NoLookup(("127.0.0.1", 0), Quiet)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    t.cleanups.append(httpd.shutdown)
    t.cleanups.append(httpd.server_close)
    return httpd.server_address[1]


@test(params=[("crlf", b"GET / HTTP/1.0\r\n\r\n"), ("paper-lf", b"GET / HTTP/1.0\n\n")])
def test_http_get_paper(t, request):
    port = http_server(t)
    r = t.run_pbx(["connect", f"127.0.0.1:{port}"], stdin=request)
    eq(r.rc, 0, f"exit status ({short(r.err)})")
    head, sep, body = r.out.partition(b"\r\n\r\n")
    check(sep, f"no end of HTTP head in {short(r.out)}")
    check(head.startswith(b"HTTP/1.0 200 OK\r\n"), f"status line: {short(head[:40])}")
    check(re.search(rb"\r\nContent-Length: %d\r?(\n|$)" % len(INDEX), head),
          f"Content-Length {len(INDEX)} missing from {short(head)}")
    eq(body, INDEX, "body")


@test(params=["serial", "fork"])
def test_curl_to_program(t, model):
    curl = need_tool("curl", "curl")
    srv = t.serve("127.0.0.1:0", ["--", PY, os.path.join(PEERS, "http_hello.py")],
                  ["-m", model])
    r = t.run([curl, "-sS", "--noproxy", "*", "-w",
               "\n%{local_ip} %{local_port} %{remote_ip} %{remote_port}",
               f"http://127.0.0.1:{srv.port}/"], stdin=None,
              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    eq(r.rc, 0, f"curl exit status ({short(r.err)})")
    body, _, w = r.out.decode(errors="replace").rpartition("\n")
    lip, lport, rip, rport = w.split()
    eq(rport, str(srv.port), "curl's remote port")
    eq(body, f"you are {lip} {lport}, I am {rip} {rport}\n", "body (the program's UCSPI view)")
    srv.stop()


# ---------------------------------------------------------------------------
# ucspi-tcp: tcpclient against pbx serve, pbx connect against tcpserver
# ---------------------------------------------------------------------------

SHOW_SERVER = 'echo "$TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT"'
SHOW_CLIENT = 'cat <&6; echo "$TCPLOCALIP $TCPLOCALPORT $TCPREMOTEIP $TCPREMOTEPORT"'


@test()
def test_tcpclient_to_pbx_hello(t):
    tcpclient = need_tool("tcpclient", "ucspi-tcp")
    srv = t.serve("127.0.0.1:0", ["hello"])
    r = t.run([tcpclient, "-RHl0", "127.0.0.1", str(srv.port), "sh", "-c", SHOW_CLIENT],
              stdin=None)
    eq(r.rc, 0, f"tcpclient exit status ({short(r.err)})")
    lines = r.out.decode(errors="replace").splitlines()
    eq(len(lines), 2, f"output lines {lines}")
    m = match(rf"127\.0\.0\.1 (\d+) 127\.0\.0\.1 {srv.port}", lines[1], "tcpclient's view")
    eq(lines[0], f"Hello, person from 127.0.0.1:{m.group(1)}", "greeting")
    srv.stop()


@test(params=["serial", "fork"])
def test_tcpclient_to_pbx_program(t, model):
    tcpclient = need_tool("tcpclient", "ucspi-tcp")
    srv = t.serve("127.0.0.1:0", ["--", "sh", "-c", SHOW_SERVER], ["-m", model])
    r = t.run([tcpclient, "-RHl0", "127.0.0.1", str(srv.port), "sh", "-c", SHOW_CLIENT],
              stdin=None)
    eq(r.rc, 0, f"tcpclient exit status ({short(r.err)})")
    lines = r.out.decode(errors="replace").splitlines()
    eq(len(lines), 2, f"output lines {lines}")
    m = match(rf"127\.0\.0\.1 (\d+) 127\.0\.0\.1 {srv.port}", lines[1], "tcpclient's view")
    eq(lines[0], lines[1], "pbx serve's program view (remote, local) vs tcpclient's"
       " (local, remote)")
    check(m.group(1) != "0", "client port 0")
    srv.stop()


def tcpserver(t, program):
    exe = need_tool("tcpserver", "ucspi-tcp")
    p = t.spawn([exe, "-1", "-RHl0", "127.0.0.1", "0"] + program)
    out = p.wait_stdout(lambda b: b"\n" in b, timeout=10, what="tcpserver -1 port line")
    port = int(out.split(b"\n")[0])
    return p, port


@test()
def test_connect_program_to_tcpserver(t):
    _, port = tcpserver(t, ["sh", "-c", SHOW_SERVER])
    r = t.run_pbx(["connect", f"127.0.0.1:{port}", "--", "sh", "-c", SHOW_CLIENT], stdin=None)
    eq(r.rc, 0, f"exit status ({short(r.err)})")
    lines = r.out.decode(errors="replace").splitlines()
    eq(len(lines), 2, f"output lines {lines}")
    match(rf"127\.0\.0\.1 [1-9]\d* 127\.0\.0\.1 {port}", lines[1], "pbx connect's program view")
    eq(lines[1], lines[0], "pbx connect's program view (local, remote) vs the tcpserver"
       " program's (remote, local)")


@test()
def test_connect_relay_to_tcpserver_cat(t):
    _, port = tcpserver(t, ["cat"])
    data = os.urandom(512 * 1024)
    r = t.run_pbx(["connect", f"127.0.0.1:{port}"], stdin=data, timeout=20)
    eq(len(r.out), len(data), "bytes back from cat under tcpserver")
    check(r.out == data, "data back from cat differs")
    eq(r.rc, 0, f"exit status ({short(r.err)})")
