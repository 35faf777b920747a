# SPDX-License-Identifier: MIT
"""pbx serve ADDR -- PROGRAM: the UCSPI environment, the fds and signal
state the program gets, a missing program, and the -v end line."""
import os
import re
import signal

from harness import (MODELS, PEERS, PY, base_env, check, check_env, children, env_dict,
                     eq, exchange, fd_list, load_json, match, recv_all, short, test,
                     wait_until)

STALE = ("TCPREMOTEHOST", "TCPREMOTEINFO", "TCPLOCALHOST")


def dump_program(t):
    """A `pbxdump` command in a fresh directory, to be found through PATH."""
    d = os.path.join(t.tmpdir(), "bin")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "pbxdump")
    with open(path, "w") as f:
        f.write(f"#!{PY}\n"
                "import runpy, sys\n"
                f"sys.path.insert(0, {PEERS!r})\n"
                f"runpy.run_path({os.path.join(PEERS, 'ucspi_dump.py')!r},"
                " run_name='__main__')\n")
    os.chmod(path, 0o755)
    return d


def env_with_stale(bindir):
    return base_env(PATH=bindir + ":" + base_env()["PATH"], PBX_E2E_MARK="kept as is",
                    TCPREMOTEHOST="stale.example", TCPREMOTEINFO="stale",
                    TCPLOCALHOST="stale.example", TCPREMOTEIP="192.0.2.9",
                    TCPREMOTEPORT="9", TCPLOCALIP="192.0.2.8", TCPLOCALPORT="8", PROTO="UDP")


ENV_CASES = []
for _m in MODELS:
    ENV_CASES += [
        (f"{_m}-ipv4", _m, "127.0.0.1:0", "127.0.0.1", "127.0.0.1"),
        (f"{_m}-ipv6", _m, "[::1]:0", "::1", "::1"),
        (f"{_m}-dual-ipv4-client", _m, ":0", "127.0.0.1", "127.0.0.1"),
        (f"{_m}-dual-ipv6-client", _m, ":0", "::1", "::1"),
    ]


@test(params=ENV_CASES)
def test_env(t, model, addr, client, local_ip):
    bindir = dump_program(t)
    env = env_with_stale(bindir)
    srv = t.serve(addr, ["--", "pbxdump", "server", "two words", ""], ["-m", model], env=env)
    s = t.dial(client, srv.port)
    cport = s.getsockname()[1]
    r = load_json(recv_all(s, 10, "program output"), "program output")
    want = {k: v for k, v in env.items() if k not in STALE}
    want.update(PROTO="TCP", TCPLOCALIP=local_ip, TCPLOCALPORT=str(srv.port),
                TCPREMOTEIP=client, TCPREMOTEPORT=str(cport))
    got = env_dict(r["env"], "the program's environment")
    check_env(got, want)
    eq(r["argv"], ["server", "two words", ""], "program arguments")
    srv.stop()


@test(params=MODELS)
def test_fds(t, model):
    bindir = dump_program(t)
    env = base_env(PATH=bindir + ":" + base_env()["PATH"])
    srv = t.serve("127.0.0.1:0", ["--", "pbxdump", "server"], ["-m", model], env=env)
    s = t.dial("127.0.0.1", srv.port)
    cport = s.getsockname()[1]
    r = load_json(recv_all(s, 10, "program output"), "program output")
    fds = r["fds"]
    eq(sorted(fds, key=int), ["0", "1", "2"], f"open fds in the program ({short(fds)})")
    check(fds["0"].startswith("socket:["), f"fd 0 is {fds['0']}, not a socket")
    eq(fds["1"], fds["0"], "fd 1 (the same socket as fd 0)")
    eq(r["socks"]["0"].get("peer"), ["127.0.0.1", cport], "fd 0 peer address")
    eq(r["socks"]["0"].get("local"), ["127.0.0.1", srv.port], "fd 0 local address")
    eq(r["socks"]["0"].get("nonblocking"), False, "O_NONBLOCK on the program's socket")
    eq(fds["2"], os.readlink(f"/proc/{srv.pid}/fd/2"), "fd 2 (pbx's own stderr)")
    srv.stop()


SIGS_GLIBC = (1 << 31) | (1 << 32)  # signals 32 and 33, glibc's internal ones


def signal_names(mask):
    names = []
    for n in range(1, 65):
        if mask & (1 << (n - 1)):
            try:
                names.append(signal.Signals(n).name)
            except ValueError:
                names.append(str(n))
    return names


def check_signal_state(t, srv):
    s = t.dial("127.0.0.1", srv.port)
    status = recv_all(s, 10, "/proc/self/status of the program").decode(errors="replace")
    fields = dict(re.findall(r"^(Sig\w+):\s*([0-9a-fA-F]+)$", status, re.M))
    check("SigBlk" in fields and "SigIgn" in fields,
          f"no SigBlk/SigIgn in the program's status: {short(status)}")
    blk = int(fields["SigBlk"], 16)
    ign = int(fields["SigIgn"], 16) & ~SIGS_GLIBC
    eq(signal_names(blk), [], "signals blocked in the program (SigBlk)")
    eq(signal_names(ign), [], "signals ignored in the program (SigIgn, 32/33 excepted)")


@test(params=MODELS)
def test_signals_default(t, model):
    srv = t.serve("127.0.0.1:0", ["--", "cat", "/proc/self/status"], ["-m", model])
    check_signal_state(t, srv)
    srv.stop()


# pbx started with SIGHUP and SIGPIPE ignored and SIGUSR1 blocked, as under
# nohup or a careless supervisor: the program still gets a clean state.
LAUNCHER = [PY, "-c", "import os, signal, sys\n"
            "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGPIPE, signal.SIG_IGN)\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n"]


@test(params=MODELS)
def test_signals_default_when_inherited(t, model):
    srv = t.serve("127.0.0.1:0", ["--", "cat", "/proc/self/status"], ["-m", model],
                  launcher=LAUNCHER)
    check_signal_state(t, srv)
    srv.stop()


@test(params=MODELS)
def test_missing_program(t, model):
    srv = t.serve("127.0.0.1:0", ["--", "nosuchprog"], ["-m", model])
    line = "pbx: serve: run nosuchprog: No such file or directory"
    start = srv.ready_index + 1
    for n in range(2):
        s = t.dial("127.0.0.1", srv.port)
        eq(recv_all(s, 10, "reply with a missing program"), b"", "reply")
        i, _ = srv.wait_line(re.escape(line), start=start, what=f"connection {n + 1}'s error")
        start = i + 1
    srv.check_alive("after a missing program")
    srv.stop()
    eq(srv.err_lines(), [srv.listen_line(), line, line], "stderr")


@test(params=MODELS)
def test_verbose_exit_status(t, model):
    srv = t.serve("127.0.0.1:0", ["--", "sh", "-c", "echo $$; exit 3"], ["-m", model, "-v"])
    s = t.dial("127.0.0.1", srv.port)
    cport = s.getsockname()[1]
    out = recv_all(s, 10, "program output").decode()
    m = match(r"(\d+)\n", out, "program output (its pid)")
    prog_pid = m.group(1)
    # The same four events in every model: the program's start and exit
    # (under fork, the child became the program), then the end.
    end = rf"pbx: end remote=127\.0\.0\.1:{cport} ms=\d+ end=closed"
    srv.wait_line(end, what="end line")
    srv.stop()
    lines = srv.err_lines()
    accept = rf"pbx: accept remote=127\.0\.0\.1:{cport} local=127\.0\.0\.1:{srv.port}"
    if model == "fork":
        accept += r" pid=(\d+)"
    want = [accept,
            rf"pbx: start remote=127\.0\.0\.1:{cport} pid=(\d+) program=sh",
            rf"pbx: exit remote=127\.0\.0\.1:{cport} pid=(\d+) status=3 ms=\d+",
            end]
    eq(len(lines), 5, f"stderr lines {lines}")
    ms = [match(rx, line, "event line") for rx, line in zip(want, lines[1:])]
    eq(ms[1].group(1), prog_pid, "pid in the start line (the program's)")
    eq(ms[2].group(1), prog_pid, "pid in the exit line (the program's)")
    if model == "fork":
        eq(ms[0].group(1), prog_pid, "pid in the accept line (the child became the program)")


@test(params=MODELS)
def test_verbose_signal(t, model):
    srv = t.serve("127.0.0.1:0", ["--", "sh", "-c", "kill -9 $$"], ["-m", model, "-v"])
    s = t.dial("127.0.0.1", srv.port)
    cport = s.getsockname()[1]
    eq(recv_all(s, 10, "program output"), b"", "program output")
    srv.wait_line(rf"pbx: exit remote=127\.0\.0\.1:{cport} pid=\d+ signal=9 ms=\d+",
                  what="exit line with signal=9")
    srv.wait_line(rf"pbx: end remote=127\.0\.0\.1:{cport} ms=\d+ end=closed",
                  what="end line")
    srv.check_alive()
    srv.stop()


@test(params=MODELS)
def test_program_stderr_inherited(t, model):
    srv = t.serve("127.0.0.1:0", ["--", "sh", "-c", "echo to-stderr >&2; echo to-socket"],
                  ["-m", model])
    s = t.dial("127.0.0.1", srv.port)
    eq(recv_all(s, 10, "program output"), b"to-socket\n", "program output on the socket")
    srv.wait_line("to-stderr", what="program's stderr line on pbx's stderr")
    srv.stop()


@test(params=MODELS)
def test_program_reads_socket(t, model):
    # A filter program: the socket is its stdin and stdout, EOF included.
    srv = t.serve("127.0.0.1:0", ["--", "tr", "a-z", "A-Z"], ["-m", model])
    s = t.dial("127.0.0.1", srv.port)
    eq(exchange(s, b"hello, program\n" * 1000), b"HELLO, PROGRAM\n" * 1000, "tr output")
    srv.stop()


@test(params=MODELS, timeout=60)
def test_fds_and_children_settle(t, model):
    srv = t.serve("127.0.0.1:0", ["--", "echo", "hi"], ["-m", model])
    before = fd_list(srv.pid)
    for _ in range(40):
        s = t.dial("127.0.0.1", srv.port)
        eq(recv_all(s, 10, "program output"), b"hi\n", "program output")
        s.close()
        t.socks.remove(s)
    ok = wait_until(lambda: fd_list(srv.pid) == before and not children(srv.pid), 5)
    check(ok, f"after 40 program runs: fds {len(before)} before, {len(fd_list(srv.pid))}"
          f" after ({short(fd_list(srv.pid))}); children {children(srv.pid)}")
    srv.stop()


LEAK_FD = ("import os, sys\n"
           "fd = os.open('/dev/null', os.O_RDONLY)\n"
           "os.dup2(fd, 9)\n"  # inheritable, as a careless shell leaves it
           "os.execvp(sys.argv[1], sys.argv[1:])\n")


@test(params=MODELS)
def test_fds_leaked_into_pbx_stay_out(t, model):
    # pbx started with a stray fd (9): its programs must not get it.
    bindir = dump_program(t)
    env = base_env(PATH=bindir + ":" + base_env()["PATH"])
    srv = t.serve("127.0.0.1:0", ["--", "pbxdump", "server"], ["-m", model], env=env,
                  prefix=[PY, "-c", LEAK_FD])
    check(9 in fd_list(srv.pid), "the launcher did not leave fd 9 open in pbx")
    s = t.dial("127.0.0.1", srv.port)
    r = load_json(recv_all(s, 10, "program output"), "program output")
    eq(sorted(r["fds"], key=int), ["0", "1", "2"], "open fds in the program")
    srv.stop()
