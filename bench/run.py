#!/usr/bin/env python3
"""bench/run.py: pbx side by side with its peers, on loopback.

Every row of a workload runs in one invocation, with the server pinned to
CPU 0 and the load generator to CPU 1 (taskset), inside a private network
namespace (unshare -n) where one is available. Repetitions are interleaved
(for rep in 1..N: for row in rows: run) because the machine is noisy; the
report gives medians, min-max and ratios against each workload's reference
row, and marks every bar PASS or FAIL.

    python3 bench/run.py              full run: 5 repetitions, 5 s runs
    python3 bench/run.py --quick      smoke check: 1 repetition, 2 s runs
    python3 bench/run.py --only echo  one workload (or a comma list)
    python3 bench/run.py --pbx build/clang/pbx
    python3 bench/run.py --only bulk --pbx-old /tmp/old/build/pbx

The bulk workload times `pbx connect` moving a fixed number of bytes
between a pipe and a socket, upload and download, beside nc and socat and
two minimal clients from bench/bulk.c; every byte is counted at the far
end. --pbx-old PATH adds the rows "pbx connect (old)" run with another
pbx binary (an earlier build, say a worktree of the commit before), so
"no slower than before" is a ratio, and a bar, of one run.

Writes bench/results.md and bench/results.json. Python 3 standard library
only. See bench/README.md for what each row is and how to re-run one.
"""

import argparse
import datetime
import json
import os
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(HERE, "bin")
CFLAGS = ["-O2", "-std=c17", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror"]
# Built from bench/*.c; greet is linked -static (the brief: one tiny
# static program, the same for every server).
PROGRAMS = {
    "greet": ["-static"],
    "epoll_greet": [],
    "epoll_echo": [],
    "spawn_server": [],
    "loadgen": [],
    "bulk": [],
}
WORKLOADS = ["greeting", "program", "idle", "echo", "loadgen", "bulk"]
NETNS_ENV = "PBX_BENCH_NETNS"
SERVER_CPU, LOAD_CPU = "0", "1"
GREETING = "Hello, person from 127.0.0.1:"
HOLD_CONNS = 19000
# The greeting row "pbx event hello + door": --rules with this many rules
# (all deny but one allow that covers the load's source, 127.0.0.1), and
# --max-per-ip at the default --max-conns, far above the 50 calls in flight.
DOOR_RULES = 10000
DOOR_MAX_PER_IP = 10000
PROXY_HOLD_CONNS = 9000
FD_LIMIT = 20000
# Bytes per bulk transfer, sized so that one lasts about a second here
# (the splicing clients move 3-5 times as much down as up), and 5
# repetitions of every row stay near a minute and a half.
BULK_BYTES = {"upload": 1 << 30, "download": 2 << 30}
BULK_BYTES_QUICK = {"upload": 512 << 20, "download": 1 << 30}

# Debian packages of the peers: the package, and a binary that proves it.
PEER_PACKAGES = [
    ("nginx-light", "/usr/sbin/nginx"),
    ("libnginx-mod-stream", "/usr/lib/nginx/modules/ngx_stream_module.so"),
    ("ucspi-tcp", "/usr/bin/tcpserver"),
    ("ipsvd", "/usr/bin/tcpsvd"),
    ("socat", "/usr/bin/socat"),
    ("ncat", "/usr/bin/ncat"),
    ("netcat-openbsd", "/bin/nc.openbsd"),
    ("openbsd-inetd", "/usr/sbin/inetd"),
]
VERSION_PACKAGES = [
    "nginx", "nginx-light", "libnginx-mod-stream", "ucspi-tcp", "ipsvd",
    "socat", "ncat", "netcat-openbsd", "openbsd-inetd", "systemd", "libc6",
    "gcc", "linux-image-amd64",
]
NGINX_STREAM_SO = "/usr/lib/nginx/modules/ngx_stream_module.so"

# Every process this script starts, so that every one is killed on exit.
STARTED = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def die_with_parent():
    """In the child: SIGKILL it if this script dies, even by SIGKILL."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(argv, stdout, stderr, cwd=None, stdin=subprocess.DEVNULL):
    """Start argv in its own process group (so the group can be killed)."""
    p = subprocess.Popen(argv, stdin=stdin, stdout=stdout,
                         stderr=stderr, cwd=cwd, start_new_session=True,
                         preexec_fn=die_with_parent)
    STARTED.append(p)
    return p


def kill_group(p, sig=signal.SIGKILL):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(p, sig=signal.SIGTERM, timeout=10.0):
    """Ask p to stop with sig, wait (bounded), then kill its whole group."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"  {p.args[0]} ignored signal {sig}: killing it")
    kill_group(p)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if p in STARTED:
        STARTED.remove(p)


def kill_all():
    for p in list(STARTED):
        kill_group(p)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    STARTED.clear()


def run_checked(argv, timeout, **kw):
    return subprocess.run(argv, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout,
                          **kw)


# ----------------------------------------------------------- /proc readings


def cpu_busy(cpu):
    """Busy seconds of one CPU: user+nice+system+irq+softirq+steal."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                return busy / os.sysconf("SC_CLK_TCK")
    raise RuntimeError(f"no cpu{cpu} in /proc/stat")


def process_tree(root):
    """root and every descendant, from the ppid field of /proc/*/stat."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_memory_kib(root):
    """(PSS, RSS) in KiB summed over root's process tree."""
    pss = rss = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


def tree_fds(root):
    n = 0
    for pid in process_tree(root):
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return n


# ------------------------------------------------------------------ servers


def free_port():
    """A free TCP port on 127.0.0.1 (inside our namespace nobody races)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A server under test: its command, its process, its log.

    ready is "line" (the server says "listening on HOST:PORT" on stderr;
    PORT is then read back) or "connect" (we poll with a connection).
    """

    def __init__(self, ctx, name, argv, port, ready="connect", files=None,
                 helpers=()):
        self.ctx, self.name, self.argv = ctx, name, argv
        self.port, self.ready = port, ready
        self.files = files or {}
        self.helpers = list(helpers)  # started first, stopped last
        self.proc = None
        self.logpath = os.path.join(ctx.tmp, f"{slug(name)}.log")

    def command(self):
        return show(self.ctx, ["taskset", "-c", SERVER_CPU] + self.argv)

    def start(self, timeout=10.0):
        for h in self.helpers:
            h.start(timeout)
        for path, text in self.files.items():
            with open(path, "w") as f:
                f.write(text)
        logf = open(self.logpath, "w")
        try:
            self.proc = spawn(["taskset", "-c", SERVER_CPU] + self.argv,
                              logf, logf, cwd=self.ctx.tmp)
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status "
                                   f"{self.proc.returncode}: "
                                   f"{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s: "
                           f"{self.log_tail()}")

    def is_ready(self):
        if self.ready == "line":
            m = re.search(r"listening on [^\s]*:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
            return m is not None
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
        except OSError:
            return False

    def log(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self):
        return " | ".join(self.log().strip().splitlines()[-3:])

    def stop(self):
        """Stop; returns the connections the server says it served."""
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
        for h in self.helpers:
            h.stop()
        counts = re.findall(r"served (\d+) connections?", self.log())
        return sum(int(c) for c in counts) if counts else None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


def show(ctx, argv):
    """argv as a shell line a reader can re-run from the repository root:
    the snapshot of pbx shows as the path given to --pbx (and that of
    --pbx-old as its path), bench/bin as such, the scratch directory as
    $TMP."""
    line = shlex.join(argv) if isinstance(argv, list) else argv
    if getattr(ctx, "pbx_old", None):
        line = line.replace(ctx.pbx_old, ctx.pbx_old_shown)
    line = line.replace(ctx.pbx, ctx.pbx_shown)
    line = line.replace(ctx.tmp, "$TMP")
    return line.replace(ROOT + "/", "")


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# -------------------------------------------------------------------- rows


class Row:
    """One line of a table: how to start its server(s), whether it can."""

    def __init__(self, name, kind, make, note="", available=None):
        self.name, self.kind, self.make = name, kind, make
        self.note = note
        self.available = available  # None: yes; else the reason why not
        self.runs = []
        self.commands = None

    def to_json(self):
        return {"name": self.name, "kind": self.kind, "note": self.note,
                "available": self.available is None,
                "reason": self.available, "commands": self.commands,
                "runs": self.runs}


def need(path):
    return None if os.path.exists(path) else f"{path} not found"


def nginx_conf(ctx, workers, server_block, extra_main="", conns=4096):
    return f"""# generated by bench/run.py
load_module {NGINX_STREAM_SO};
worker_processes {workers};
{extra_main}pid {ctx.tmp}/nginx.pid;
error_log {ctx.tmp}/nginx-error.log warn;
daemon off;
events {{ worker_connections {conns}; }}
stream {{
    server {{
{server_block}
    }}
}}
"""


def nginx_server(ctx, name, workers, block, extra_main="", conns=4096):
    port = free_port()
    conf = os.path.join(ctx.tmp, f"{slug(name)}.conf")
    text = nginx_conf(ctx, workers,
                      block.replace("PORT", str(port)), extra_main, conns)
    argv = ["nginx", "-p", ctx.tmp, "-e", f"{ctx.tmp}/nginx-error.log",
            "-c", conf]
    return Server(ctx, name, argv, port, files={conf: text})


def pbx_server(ctx, name, args):
    return Server(ctx, name, [ctx.pbx, "serve"] + args, 0, ready="line")


def bin_path(name):
    return os.path.join(BIN, name)


# ------------------------------------------------------------------- loads


def run_load(ctx, argv, server, seconds, samples=(0.4, 0.8)):
    """Run the load generator on CPU 1 against a started server.

    Returns its JSON report plus the busy time of CPU 0 and CPU 1 over the
    run and the peak memory of the server's process tree (sampled at the
    given fractions of the run, not more often: the sampler shares CPU 1
    with the load).
    """
    argv = ["taskset", "-c", LOAD_CPU] + argv
    out = os.path.join(ctx.tmp, "load.out")
    err = os.path.join(ctx.tmp, "load.err")
    mem = []
    c0, c1 = cpu_busy(SERVER_CPU), cpu_busy(LOAD_CPU)
    t0 = time.monotonic()
    with open(out, "w") as fo, open(err, "w") as fe:
        p = spawn(argv, fo, fe)
    try:
        for frac in samples:
            wait = t0 + seconds * frac - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if server.proc.poll() is None:
                mem.append(tree_memory_kib(server.proc.pid))
        p.wait(timeout=seconds + 60)
    finally:
        stop(p, signal.SIGKILL, timeout=1)
    wall = time.monotonic() - t0
    c0, c1 = cpu_busy(SERVER_CPU) - c0, cpu_busy(LOAD_CPU) - c1
    with open(out) as f:
        text = f.read().strip()
    try:
        report = json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        with open(err) as f:
            raise RuntimeError(f"load generator said: {f.read()[-300:]}"
                               f"{text[-300:]}")
    return {"report": report, "cpu0_s": c0, "cpu1_s": c1, "wall_s": wall,
            "pss_kib": max((m[0] for m in mem), default=None),
            "rss_kib": max((m[1] for m in mem), default=None),
            "command": show(ctx, argv)}


def bench_argv(ctx, server, seconds, *extra):
    return [ctx.pbx, "bench", "--json", "-d", fmt_num(seconds), *extra,
            server.address]


def fmt_num(x):
    return str(int(x)) if float(x).is_integer() else str(x)


# ----------------------------------------------------------- the workloads


def greeting_rows(ctx):
    nginx = need(NGINX_STREAM_SO) or need("/usr/sbin/nginx")
    ret = ('        listen 127.0.0.1:PORT backlog=4096 reuseport;\n'
           '        return "Hello, person from '
           '$remote_addr:$remote_port\\n";')
    workers = ctx.has_workers
    rows = [
        Row("epoll greeting server (bench/epoll_greet.c)", "ref",
            lambda: Server(ctx, "epoll_greet",
                           [bin_path("epoll_greet"), "127.0.0.1", "0"], 0,
                           ready="line"),
            "the machine's ceiling: accept4, write, close"),
        Row("pbx event", "pbx",
            lambda: pbx_server(ctx, "pbx event",
                               ["--model", "event", "127.0.0.1:0", "hello"])),
        Row("pbx event hello + door", "pbx",
            lambda: pbx_server(ctx, "pbx event door",
                               ["--model", "event", "--rules",
                                door_rules(ctx), "--max-per-ip",
                                str(DOOR_MAX_PER_IP), "127.0.0.1:0",
                                "hello"]),
            f"--rules with {DOOR_RULES:,} rules ({DOOR_RULES - 1:,} deny "
            "/24s and /32s in 10.0.0.0/8, 198.18.0.0/15 and 127.0.0.3-254, "
            "none the load's; one `127.0.0.0/8 allow`), so every call is "
            "allowed after a full longest-prefix lookup; --max-per-ip "
            f"{DOOR_MAX_PER_IP:,} (= the default --max-conns; never hit "
            "by 50 in flight)"),
        Row("pbx event --workers 2", "pbx",
            lambda: pbx_server(ctx, "pbx event w2",
                               ["--model", "event", "--workers", "2",
                                "127.0.0.1:0", "hello"]),
            "both workers on CPU 0",
            None if workers else
            "not available: `pbx serve --help` has no --workers"),
        Row("pbx fork", "pbx",
            lambda: pbx_server(ctx, "pbx fork",
                               ["--model", "fork", "127.0.0.1:0", "hello"])),
        Row("pbx serial", "pbx",
            lambda: pbx_server(ctx, "pbx serial",
                               ["--model", "serial", "127.0.0.1:0",
                                "hello"])),
        Row("nginx stream return, 1 worker", "peer",
            lambda: nginx_server(ctx, "nginx stream 1w", 1, ret),
            "master + 1 worker", nginx),
        Row("nginx stream return, 2 workers", "peer",
            lambda: nginx_server(ctx, "nginx stream 2w", 2, ret),
            "master + 2 workers, both on CPU 0", nginx),
    ]
    return rows


def door_rules(ctx):
    """The --rules file of "pbx event hello + door", written once into the
    scratch directory: DOOR_RULES distinct rules, every one a deny but
    `127.0.0.0/8 allow`, which covers the load's only source (127.0.0.1,
    the greeting's --expect checks it). The denies are /24s in 10.0.0.0/8,
    /32s in 198.18.0.0/15 and /32s 127.0.0.3-127.0.0.254: addresses the
    load never uses, the last ones so that the trie's path to 127.0.0.1
    runs down to the /30 above it (the deepest lookup there is) before
    the /8 allow decides."""
    path = os.path.join(ctx.tmp, f"door-{DOOR_RULES}.rules")
    if os.path.exists(path):
        return path
    lines = [f"# generated by bench/run.py: {DOOR_RULES} rules, one allow",
             "127.0.0.0/8 allow"]
    deny = [f"127.0.0.{i}/32 deny" for i in range(3, 255)]
    n24 = (DOOR_RULES - 1 - len(deny)) // 2
    deny += [f"10.{i >> 8}.{i & 255}.0/24 deny" for i in range(n24)]
    n32 = DOOR_RULES - 1 - len(deny)
    deny += [f"198.{18 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32 deny"
             for i in range(n32)]
    lines += deny
    assert len(lines) - 1 == DOOR_RULES and len(set(lines)) == len(lines)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def greeting_load(ctx, server, seconds):
    return bench_argv(ctx, server, seconds, "-c", "50", "--expect", GREETING)


def program_rows(ctx):
    greet = bin_path("greet")
    inetd_conf = os.path.join(ctx.tmp, "inetd-greet.conf")

    def inetd():
        port = free_port()
        text = (f"127.0.0.1:{port} stream tcp4 nowait.100000000 root "
                f"{greet} greet\n")
        return Server(ctx, "inetd greet",
                      ["inetd", "-i", "-q", "4096", "-R", "100000000",
                       inetd_conf], port, files={inetd_conf: text})

    def simple(name, argv_fn):
        def make():
            port = free_port()
            return Server(ctx, name, argv_fn(port), port)
        return make

    return [
        Row("posix_spawn server (bench/spawn_server.c)", "ref",
            lambda: Server(ctx, "spawn_server",
                           [bin_path("spawn_server"), "127.0.0.1", "0",
                            greet], 0, ready="line"),
            "the machine's ceiling: accept4, posix_spawn, reap; "
            "at most 100 children"),
        Row("pbx event", "pbx",
            lambda: pbx_server(ctx, "pbx event exec",
                               ["--model", "event", "--max-conns", "100",
                                "127.0.0.1:0", "--", greet]),
            "--max-conns 100, as the peers' limits (the default is 10000)"),
        Row("pbx fork", "pbx",
            lambda: pbx_server(ctx, "pbx fork exec",
                               ["--model", "fork", "--max-conns", "100",
                                "127.0.0.1:0", "--", greet]),
            "--max-conns 100, as the peers' limits (the default is 500)"),
        Row("ucspi-tcp tcpserver", "peer",
            simple("tcpserver", lambda p: [
                "tcpserver", "-RHl0", "-c", "100", "-b", "4096",
                "127.0.0.1", str(p), greet]),
            "-c 100 -b 4096 (defaults 40 and 20)",
            need("/usr/bin/tcpserver")),
        Row("ipsvd tcpsvd", "peer",
            simple("tcpsvd", lambda p: [
                "tcpsvd", "-l", "localhost", "-c", "100", "-b", "4096",
                "127.0.0.1", str(p), greet]),
            "-c 100 -b 4096; -l localhost: no DNS look-up of its own name",
            need("/usr/bin/tcpsvd")),
        Row("socat fork EXEC", "peer",
            simple("socat exec", lambda p: [
                "socat", f"TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork,"
                "backlog=4096,max-children=100", f"EXEC:{greet}"]),
            "program on a socketpair, socat relays", need("/usr/bin/socat")),
        Row("ncat -lk --exec", "peer",
            simple("ncat exec", lambda p: [
                "ncat", "-lk", "--max-conns", "100", "--exec", greet,
                "127.0.0.1", str(p)]),
            "--max-conns 100", need("/usr/bin/ncat")),
        Row("openbsd-inetd", "peer", inetd,
            "private inetd.conf, -i (foreground), nowait and -R raised",
            need("/usr/sbin/inetd")),
        Row("systemd-socket-activate --inetd -a", "peer",
            simple("systemd-socket-activate", lambda p: [
                "systemd-socket-activate", "--inetd", "-a", "-l",
                f"127.0.0.1:{p}", greet]),
            "no connection limit", need("/usr/bin/systemd-socket-activate")),
    ]


def echo_rows(ctx):
    inetd_conf = os.path.join(ctx.tmp, "inetd-echo.conf")

    def inetd():
        # Internal services go by their /etc/services name: echo is port 7,
        # which is ours inside the private namespace.
        text = "127.0.0.1:echo stream tcp4 nowait.100000000 root internal\n"
        return Server(ctx, "inetd echo",
                      ["inetd", "-i", "-q", "4096", "-R", "100000000",
                       inetd_conf], 7, files={inetd_conf: text})

    def simple(name, argv_fn):
        def make():
            port = free_port()
            return Server(ctx, name, argv_fn(port), port)
        return make

    port7 = None if ctx.netns else "port 7 may be taken outside a namespace"
    return [
        Row("epoll echo server (bench/epoll_echo.c)", "ref",
            lambda: Server(ctx, "epoll_echo",
                           [bin_path("epoll_echo"), "127.0.0.1", "0"], 0,
                           ready="line"),
            "the machine's ceiling"),
        Row("pbx event echo", "pbx",
            lambda: pbx_server(ctx, "pbx event echo",
                               ["--model", "event", "127.0.0.1:0", "echo"])),
        Row("openbsd-inetd internal echo", "peer", inetd,
            "a process per connection (inetd forks for stream echo)",
            need("/usr/sbin/inetd") or port7),
        Row("ncat -lk --exec /bin/cat", "peer",
            simple("ncat cat", lambda p: [
                "ncat", "-lk", "--max-conns", "100", "--exec", "/bin/cat",
                "127.0.0.1", str(p)]),
            "a cat per connection", need("/usr/bin/ncat")),
        Row("socat fork PIPE", "peer",
            simple("socat pipe", lambda p: [
                "socat", f"TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork,"
                "backlog=4096", "PIPE"]),
            "a socat child per connection", need("/usr/bin/socat")),
    ]


def echo_load(ctx, server, seconds, conns):
    return bench_argv(ctx, server, seconds, "-c", str(conns), "--send",
                      "@" + ctx.msg4k, "--expect-bytes", "4096",
                      "--rounds", "0")


def idle_rows(ctx):
    nginx = need(NGINX_STREAM_SO) or need("/usr/sbin/nginx")
    idle = ctx.idle_default
    limits = f"worker_rlimit_nofile {FD_LIMIT};\n"

    def nginx_proxy():
        up_port = free_port()
        up = pbx_server(ctx, "upstream pbx discard",
                        ["--model", "event", "-c", str(FD_LIMIT),
                         f"127.0.0.1:{up_port}", "discard"])
        block = ("        listen 127.0.0.1:PORT backlog=4096;\n"
                 f"        proxy_pass 127.0.0.1:{up_port};\n"
                 "        proxy_timeout 1h;")
        srv = nginx_server(ctx, "nginx stream proxy", 1, block, limits,
                           conns=FD_LIMIT)
        srv.helpers = [up]
        srv.sockets_per_conn = 2  # the caller's and the upstream's
        # Two fds a connection under a hard limit of 20,000 that even root
        # cannot raise here: hold fewer. Bytes per connection still hold.
        srv.hold_conns = PROXY_HOLD_CONNS
        return srv

    def nginx_preread():
        # Nothing is ever dialled: the session waits in the preread phase
        # for a TLS ClientHello that never comes.
        block = ("        listen 127.0.0.1:PORT backlog=4096;\n"
                 "        ssl_preread on;\n"
                 "        preread_timeout 1h;\n"
                 "        proxy_pass 127.0.0.1:9;")
        return nginx_server(ctx, "nginx stream preread", 1, block,
                            f"worker_rlimit_nofile {FD_LIMIT};\n",
                            conns=FD_LIMIT)

    return [
        Row(f"pbx event echo, idle timeout on ({idle} s, the default)",
            "pbx",
            lambda: pbx_server(ctx, "pbx event hold",
                               ["--model", "event", "-c", str(FD_LIMIT),
                                "127.0.0.1:0", "echo"]),
            "--max-conns 20000 (the default 10000 is too few); idle echo "
            f"connections under the default --idle-timeout ({idle} s, "
            "longer than the hold, so none is ended) and keepalive"),
        Row("nginx stream proxy_pass to a holding upstream", "peer",
            nginx_proxy,
            "1 worker; each client connection is relayed to an upstream "
            "(pbx event discard, not counted) that holds it: 2 sockets per "
            f"connection, so only {PROXY_HOLD_CONNS:,} held (the fd hard "
            "limit is 20,000 and cannot be raised here)", nginx),
        Row("nginx stream waiting in preread", "peer", nginx_preread,
            "1 worker; ssl_preread on, preread_timeout 1h: each session "
            "waits for a ClientHello, no upstream socket", nginx),
    ]


# ------------------------------------------------------------- run a table


def run_rows(ctx, workload, rows, one_run):
    """Interleave: for rep in 1..N: for row in rows: one_run(row)."""
    for rep in range(1, ctx.reps + 1):
        for row in rows:
            if row.available is not None:
                continue
            log(f"[{workload}] rep {rep}/{ctx.reps}: {row.name}")
            server = None
            try:
                server = row.make()
                helpers = server.helpers
                server.start()
                time.sleep(0.3)
                res = one_run(row, server)
                died = server.proc.poll()
                if died is not None:
                    res["server_exited"] = died
                    log(f"    server exited during the run: status {died}:"
                        f" {server.log_tail()}")
                res["served"] = server.stop()
                res["rep"] = rep
                res["server_command"] = server.command()
                res["helper_commands"] = [h.command() for h in helpers]
                if row.commands is None:
                    row.commands = {"server": server.command(),
                                    "helpers": res["helper_commands"],
                                    "load": res.get("command"),
                                    "files": {os.path.basename(k):
                                              v.replace(ctx.tmp, "$TMP")
                                              for k, v in
                                              server.files.items()}}
                row.runs.append(res)
                log("    " + summary(res))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"    FAILED: {e}")
                row.runs.append({"rep": rep, "error": str(e)})
            finally:
                if server is not None:
                    server.stop()
            time.sleep(0.5)


def summary(res):
    r = res.get("report", {})
    parts = []
    for k in ("connections_per_s", "rounds_per_s", "held"):
        if r.get(k):
            parts.append(f"{k}={r[k]}")
    for k in ("cpu_us", "pss_kib", "accepted", "bytes_per_conn", "p99_us",
              "mib_s", "client_cpu_ms_gib", "cpu0_util", "cpu1_util",
              "served"):
        if res.get(k) is not None:
            parts.append(f"{k}={res[k]}")
    if r.get("errors_total"):
        parts.append(f"errors={r['errors_total']} {r.get('errors')}")
    return " ".join(parts)


def greeting_like_run(ctx, load_fn):
    def one(row, server):
        res = run_load(ctx, load_fn(ctx, server, ctx.seconds), server,
                       ctx.seconds)
        r = res["report"]
        n = r.get("connections", 0)
        res["cpu_us"] = round(res["cpu0_s"] / n * 1e6, 2) if n else None
        res["p99_us"] = r.get("latency_us", {}).get("p99")
        return res
    return one


def echo_run(ctx, conns):
    def one(row, server):
        res = run_load(ctx, echo_load(ctx, server, ctx.seconds, conns),
                       server, ctx.seconds)
        r = res["report"]
        n = r.get("rounds", 0)
        res["cpu_us"] = round(res["cpu0_s"] / n * 1e6, 2) if n else None
        res["p99_us"] = r.get("latency_us", {}).get("p99")
        return res
    return one


def idle_run(ctx):
    seconds = max(ctx.seconds, 5)

    def one(row, server):
        pid = server.proc.pid
        time.sleep(0.5)
        base_pss, base_rss = tree_memory_kib(pid)
        base_fds = tree_fds(pid)
        argv = ["taskset", "-c", LOAD_CPU, ctx.pbx, "bench", "--json",
                "--hold", "--source", "127.0.0.1,127.0.0.2",
                "-c", str(getattr(server, "hold_conns", HOLD_CONNS)),
                "-d", fmt_num(seconds),
                server.address]
        out = os.path.join(ctx.tmp, "hold.out")
        with open(out, "w") as fo, open(out + ".err", "w") as fe:
            p = spawn(argv, fo, fe)
        best = (0, 0, 0)  # fds, pss, rss while held
        t0 = time.monotonic()
        try:
            # Sample until the run is nearly over; keep the sample with the
            # most connections standing (then the highest memory).
            while time.monotonic() - t0 < seconds - 0.7:
                time.sleep(0.5)
                fds = tree_fds(pid)
                pss, rss = tree_memory_kib(pid)
                best = max(best, (fds, pss, rss))
            p.wait(timeout=seconds + 60)
        finally:
            stop(p, signal.SIGKILL, timeout=1)
        with open(out) as f:
            text = f.read().strip()
        try:
            r = json.loads(text.splitlines()[-1])
        except (ValueError, IndexError):
            with open(out + ".err") as f:
                raise RuntimeError(f"pbx bench --hold: {f.read()[-300:]}")
        fds, pss, rss = best
        # The server's own view: connections it has accepted (a client's
        # "held" also counts calls still queued in the listen backlog).
        per = getattr(server, "sockets_per_conn", 1)
        accepted = (fds - base_fds) // per
        res = {"report": r, "command": show(ctx, argv),
               "base_pss_kib": base_pss, "base_rss_kib": base_rss,
               "pss_kib": pss, "rss_kib": rss, "base_fds": base_fds,
               "fds": fds, "accepted": accepted}
        res["bytes_per_conn"] = (round((pss - base_pss) * 1024 / accepted,
                                       1) if accepted > 0 else None)
        res["rss_bytes_per_conn"] = (round((rss - base_rss) * 1024 /
                                           accepted, 1)
                                     if accepted > 0 else None)
        return res
    return one


def loadgen_rows(ctx):
    def epoll():
        return Server(ctx, "epoll_greet",
                      [bin_path("epoll_greet"), "127.0.0.1", "0"], 0,
                      ready="line")
    return [
        Row("independent loadgen (bench/loadgen.c)", "ref", epoll,
            "written for this suite, shares no code with pbx; -c 50"),
        Row("pbx bench", "pbx", epoll, "-c 50"),
        Row("pbx bench --expect", "pbx", epoll,
            "-c 50, also checks every reply's first bytes"),
    ]


def loadgen_run(ctx):
    def one(row, server):
        if row.kind == "ref":
            argv = [bin_path("loadgen"), "-c", "50", "-d",
                    fmt_num(ctx.seconds), "127.0.0.1", str(server.port)]
        elif "--expect" in row.name:
            argv = greeting_load(ctx, server, ctx.seconds)
        else:
            argv = bench_argv(ctx, server, ctx.seconds, "-c", "50")
        res = run_load(ctx, argv, server, ctx.seconds, samples=())
        r = res["report"]
        n = r.get("connections", 0)
        res["cpu_us"] = round(res["cpu0_s"] / n * 1e6, 2) if n else None
        res["load_cpu_us"] = round(res["cpu1_s"] / n * 1e6, 2) if n else None
        res["cpu0_util"] = round(res["cpu0_s"] / res["wall_s"] * 100, 1)
        res["cpu1_util"] = round(res["cpu1_s"] / res["wall_s"] * 100, 1)
        return res
    return one


# -------------------------------------------------------------- bulk


def bulk_rows(ctx, direction):
    """Rows of one direction of the bulk workload ("upload", "download").

    Every row is a client command (argv from HOST, PORT) against the same
    server: for upload `pbx serve -v discard` (its end line counts the
    bytes that arrived), for download `bulk send` (bench/bulk.c: a
    blocking write loop of one zeroed buffer, then the close).
    """
    bulk = bin_path("bulk")

    def server():
        if direction == "upload":
            return pbx_server(ctx, "bulk sink pbx discard",
                              ["-v", "--model", "event", "127.0.0.1:0",
                               "discard"])
        return Server(ctx, "bulk send",
                      [bulk, "send", "127.0.0.1", "0",
                       str(ctx.bulk_bytes[direction])], 0, ready="line")

    def row(name, kind, client, note="", available=None):
        r = Row(name, kind, server, note, available)
        r.client = client
        return r

    if direction == "upload":
        socat = (lambda h, p: ["socat", "-u", "STDIN", f"TCP:{h}:{p}"])
        socat_note = "-u STDIN TCP:...; default 8 KiB buffer (-b 8192)"
    else:
        socat = (lambda h, p: ["socat", "-u", f"TCP:{h}:{p}", "STDOUT"])
        socat_note = "-u TCP:... STDOUT; default 8 KiB buffer (-b 8192)"
    rows = [
        row("splice client (bench/bulk.c client)", "ref",
            lambda h, p: [bulk, "client", h, str(p)],
            "the least a client can do: one blocking splice(2) a chunk, "
            "straight between the pipe and the socket, no copy in the "
            "client; a yardstick, not a bound (up, a 16 KiB copy loop "
            "can beat it)"),
        row("read/write client, 16 KiB (bench/bulk.c copy)", "base",
            lambda h, p: [bulk, "copy", h, str(p), "16384"],
            "a minimal blocking copy loop through a 16 KiB buffer (nc's "
            "size; up, it moved 1.6x as much as a 64 KiB one here, "
            "presumably by staying in the cache): what splice(2) saves, "
            "or costs"),
        row("pbx connect", "pbx",
            lambda h, p: [ctx.pbx, "connect", f"{h}:{p}"]),
    ]
    if ctx.pbx_old:
        rows.append(row("pbx connect (old)", "pbx-old",
                        lambda h, p: [ctx.pbx_old, "connect", f"{h}:{p}"],
                        f"--pbx-old {ctx.pbx_old_shown}"))
    rows += [
        row("netcat-openbsd nc -N", "peer",
            lambda h, p: ["nc.openbsd", "-N", h, str(p)],
            "poll(2) and 16 KiB read/write; -N: shutdown at the end of "
            "stdin", need("/bin/nc.openbsd")),
        row("socat -u", "peer", socat, socat_note, need("/usr/bin/socat")),
    ]
    return rows


def wait_child(p, deadline):
    """Wait for p until deadline (monotonic); (end time, rusage).

    os.wait4 reaps the child itself, so its rusage is the client's own
    CPU time (user+system), not that of anything else in the pipeline.
    """
    fd = os.pidfd_open(p.pid)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{os.path.basename(p.args[-1])}: "
                                   "still running at the deadline")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                break
    finally:
        os.close(fd)
    end = time.monotonic()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return end, ru


def bulk_run(ctx, direction):
    n = ctx.bulk_bytes[direction]
    bulk = bin_path("bulk")
    pin = ["taskset", "-c", LOAD_CPU]
    # Far beyond a slow transfer (256 MiB/s), short of a hung run.
    limit = 20 + n / (256 << 20)

    def one(row, server):
        client = pin + row.client("127.0.0.1", server.port)
        err = os.path.join(ctx.tmp, "client.err")
        feed = count = None
        procs = []
        c0, c1 = cpu_busy(SERVER_CPU), cpu_busy(LOAD_CPU)
        try:
            with open(err, "w") as fe:
                if direction == "upload":
                    feed = spawn(pin + [bulk, "feed", str(n)],
                                 subprocess.PIPE, fe)
                    procs.append(feed)
                    t0 = time.monotonic()
                    p = spawn(client, subprocess.DEVNULL, fe,
                              stdin=feed.stdout)
                    feed.stdout.close()
                else:
                    t0 = time.monotonic()
                    p = spawn(client, subprocess.PIPE, fe)
                    count = spawn(pin + [bulk, "count"], subprocess.PIPE,
                                  fe, stdin=p.stdout)
                    p.stdout.close()
                    procs.append(count)
                procs.append(p)
            deadline = t0 + limit
            end, ru = wait_child(p, deadline)
            if direction == "upload":
                # Done when the sink has seen the end: a client may exit
                # with bytes still in its socket's send buffer (socat -u).
                pat = re.compile(r"\bend remote=\S+ in=(\d+)")
                while True:
                    got = pat.search(server.log())
                    if got or p.returncode != 0 or \
                            server.proc.poll() is not None or \
                            time.monotonic() > deadline:
                        break
                    time.sleep(0.001)
                end = max(end, time.monotonic() if got else end)
                arrived = int(got.group(1)) if got else None
                feed.wait(timeout=max(1, deadline - time.monotonic()))
                who = "the sink"
            else:
                end, _ = wait_child(count, deadline)
                text = count.stdout.read().strip()
                count.stdout.close()
                arrived = int(text) if text.isdigit() else None
                who = "the reader"
            c0, c1 = cpu_busy(SERVER_CPU) - c0, cpu_busy(LOAD_CPU) - c1
        finally:
            for q in procs:
                stop(q, signal.SIGKILL, timeout=1)
        with open(err, errors="replace") as f:
            said = " | ".join(f.read().strip().splitlines()[-3:])
        if p.returncode != 0:
            raise RuntimeError(f"client exited with status {p.returncode}"
                               f"{': ' + said if said else ''}")
        if arrived != n:
            raise RuntimeError(f"short: {who} counted {arrived} of {n} "
                               f"bytes{': ' + said if said else ''}")
        wall = end - t0
        cpu = ru.ru_utime + ru.ru_stime
        gib = n / (1 << 30)
        if direction == "upload":
            load = (f"{shlex.join(pin + [bulk, 'feed', str(n)])} | "
                    f"{shlex.join(client)} >/dev/null")
        else:
            load = (f"{shlex.join(client)} </dev/null | "
                    f"{shlex.join(pin + [bulk, 'count'])}")
        return {"report": {"bytes": arrived, "errors_total": 0},
                "command": show(ctx, load), "bytes": arrived,
                "wall_s": round(wall, 4),
                "mib_s": round(n / (1 << 20) / wall, 1),
                "client_cpu_s": round(cpu, 4),
                "client_user_s": round(ru.ru_utime, 4),
                "client_sys_s": round(ru.ru_stime, 4),
                "client_cpu_ms_gib": round(cpu / gib * 1000, 1),
                "cpu01_ms_gib": round((c0 + c1) / gib * 1000, 1),
                "cpu0_util": round(c0 / wall * 100, 1),
                "cpu1_util": round(c1 / wall * 100, 1)}
    return one


# ----------------------------------------------------------------- summary


def med(runs, key, sub=None):
    vals = []
    for r in runs:
        v = r.get(key) if sub is None else r.get(key, {}).get(sub)
        if isinstance(v, (int, float)):
            vals.append(v)
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals),
            "max": max(vals), "n": len(vals)}


def row_stats(row, keys):
    ok = [r for r in row.runs if "error" not in r]
    stats = {}
    for name, key, sub in keys:
        stats[name] = med(ok, key, sub)
    errs = [r["report"].get("errors_total", 0) for r in ok]
    stats["errors"] = sum(errs) if errs else None
    stats["failed_runs"] = len(row.runs) - len(ok)
    stats["server_exited"] = sum(1 for r in ok if "server_exited" in r)
    failed = [r["error"] for r in row.runs if "error" in r]
    stats["first_error"] = failed[0][:200] if failed else None
    counts = []
    for r in ok:
        served = r.get("served")
        n = r["report"].get("connections")
        if served and n:
            counts.append(abs(served - n) / served * 100)
    stats["count_diff_pct"] = max(counts) if counts else None
    return stats


GREETING_KEYS = [("conn_s", "report", "connections_per_s"),
                 ("cpu_us", "cpu_us", None), ("pss_kib", "pss_kib", None),
                 ("p99_us", "p99_us", None)]
ECHO_KEYS = [("rounds_s", "report", "rounds_per_s"),
             ("p99_us", "p99_us", None), ("cpu_us", "cpu_us", None)]
IDLE_KEYS = [("held", "report", "held"), ("accepted", "accepted", None),
             ("bytes_per_conn", "bytes_per_conn", None),
             ("rss_bytes_per_conn", "rss_bytes_per_conn", None),
             ("base_pss_kib", "base_pss_kib", None),
             ("pss_kib", "pss_kib", None), ("fds", "fds", None)]
LOADGEN_KEYS = [("conn_s", "report", "connections_per_s"),
                ("load_cpu_us", "load_cpu_us", None),
                ("cpu0_util", "cpu0_util", None),
                ("cpu1_util", "cpu1_util", None)]
BULK_KEYS = [("mib_s", "mib_s", None),
             ("client_cpu_ms_gib", "client_cpu_ms_gib", None),
             ("cpu01_ms_gib", "cpu01_ms_gib", None),
             ("cpu0_util", "cpu0_util", None),
             ("cpu1_util", "cpu1_util", None)]


def m(stats, key):
    s = stats.get(key)
    return None if s is None else s["median"]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# ----------------------------------------------------------------- context


class Ctx:
    pass


class Overtime(BaseException):
    """The whole run took too long (not caught by the per-run handlers)."""


def on_alarm(signo, frame):
    raise Overtime("run.py: the whole run took over 40 minutes")


def build(ctx):
    os.makedirs(BIN, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    for name, extra in PROGRAMS.items():
        src = os.path.join(HERE, f"{name}.c")
        out = os.path.join(BIN, name)
        argv = [cc] + CFLAGS + ["-o", out, src] + extra
        r = run_checked(argv, 120)
        if r.returncode != 0:
            raise SystemExit(f"build failed: {shlex.join(argv)}\n{r.stderr}")
    if ctx is None:
        return
    ctx.msg4k = os.path.join(ctx.tmp, "4k.bin")
    with open(ctx.msg4k, "wb") as f:
        f.write(bytes(i % 251 for i in range(4096)))


def install_peers():
    """apt-get install what is missing (before entering the namespace)."""
    missing = [pkg for pkg, path in PEER_PACKAGES if not os.path.exists(path)]
    if not missing or shutil.which("apt-get") is None or os.geteuid() != 0:
        return missing if missing else []
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + missing
    for attempt in range(2):
        try:
            r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            break
        if r.returncode == 0:
            return []
        if attempt == 0:
            subprocess.run(["apt-get", "update"], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=600)
    log("apt-get install failed; the rows of missing peers are skipped")
    return missing


def versions(ctx):
    v = {}
    r = run_checked(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"]
                    + VERSION_PACKAGES, 30)
    for line in r.stdout.splitlines():
        pkg, _, ver = line.partition("\t")
        if ver:
            v[pkg] = ver
    try:
        v["pbx"] = run_checked([ctx.pbx, "--version"], 10).stdout.strip()
    except OSError as e:
        v["pbx"] = f"({e})"
    if ctx.pbx_old:
        try:
            v["pbx (old)"] = run_checked([ctx.pbx_old, "--version"],
                                         10).stdout.strip()
        except OSError as e:
            v["pbx (old)"] = f"({e})"
    cc = os.environ.get("CC", "cc")
    v["cc"] = run_checked([cc, "--version"], 10).stdout.splitlines()[0]
    v["kernel"] = os.uname().release
    v["python"] = sys.version.split()[0]
    return v


def enter_netns(args):
    """Re-run this script inside a new network namespace if we can."""
    if os.environ.get(NETNS_ENV) or args.no_netns:
        return
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True,
                           timeout=10)
    if probe.returncode != 0:
        return
    os.environ[NETNS_ENV] = "1"
    os.execvp("unshare", ["unshare", "-n", "--", sys.executable,
                          os.path.abspath(__file__)] + sys.argv[1:])


def setup_netns(ctx):
    ctx.netns = bool(os.environ.get(NETNS_ENV))
    if not ctx.netns:
        return
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    # Per-namespace settings: the host is untouched. A wider port range
    # leaves room for 19,000 held calls plus nginx's 19,000 upstream dials.
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("10000 65535")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else FD_LIMIT
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want, hard


def sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def git_info():
    """HEAD and whether the sources differ from it (read-only git)."""
    try:
        head = run_checked(["git", "-C", ROOT, "rev-parse", "--short",
                            "HEAD"], 10).stdout.strip()
        dirty = run_checked(["git", "--no-optional-locks", "-C", ROOT,
                             "status", "--porcelain", "--untracked-files=no",
                             "--", "src", "include", "Makefile"],
                            10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" plus uncommitted changes to src/include/Makefile"
                   if dirty else "")


def background_cpu0():
    c = cpu_busy(SERVER_CPU)
    time.sleep(1.0)
    return round((cpu_busy(SERVER_CPU) - c) * 100, 1)


# ------------------------------------------------------------------ report


def fmt(x, digits=0):
    if x is None:
        return "-"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def cell(stats, key, digits=0):
    s = stats.get(key)
    if s is None:
        return "-"
    if s["n"] == 1:
        return fmt(s["median"], digits)
    return (f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}-"
            f"{fmt(s['max'], digits)})")


def rx(x):
    return "-" if x is None else f"{x:.2f}x"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 repetition of 2 s runs (a smoke check)")
    ap.add_argument("--only", default="",
                    help="workloads, comma-separated: " + ",".join(WORKLOADS))
    ap.add_argument("--pbx", default=os.path.join(ROOT, "build", "pbx"),
                    help="the pbx to measure (default build/pbx)")
    ap.add_argument("--pbx-old", metavar="PATH",
                    help="another pbx (an earlier build) whose connect "
                    "adds the bulk rows 'pbx connect (old)': an A/B in "
                    "one run")
    ap.add_argument("--reps", type=int, help="repetitions (default 5)")
    ap.add_argument("--seconds", type=float, help="seconds per run")
    ap.add_argument("--no-netns", action="store_true",
                    help="stay in the host's network namespace")
    ap.add_argument("--no-install", action="store_true",
                    help="do not apt-get install missing peers")
    ap.add_argument("--build-only", action="store_true",
                    help="only build bench/bin/ from bench/*.c")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch directory (logs, configs)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"),
                    help="path prefix of the .md and .json results")
    args = ap.parse_args()
    if args.build_only:
        build(None)
        return
    only = [w for w in args.only.split(",") if w] or WORKLOADS
    for w in only:
        if w not in WORKLOADS:
            ap.error(f"unknown workload '{w}': expected "
                     f"{', '.join(WORKLOADS)}")
    if not os.environ.get(NETNS_ENV) and not args.no_install:
        install_peers()
    enter_netns(args)

    ctx = Ctx()
    ctx.pbx_src = os.path.abspath(args.pbx)
    ctx.pbx_shown = os.path.relpath(ctx.pbx_src, ROOT) \
        if ctx.pbx_src.startswith(ROOT + "/") else ctx.pbx_src
    ctx.reps = args.reps or (1 if args.quick else 5)
    ctx.seconds = args.seconds or (2 if args.quick else 5)
    ctx.quick = args.quick
    ctx.bulk_bytes = BULK_BYTES_QUICK if args.quick else BULK_BYTES
    if not os.access(ctx.pbx_src, os.X_OK):
        raise SystemExit(f"run.py: {ctx.pbx_src} not found: run make first")
    ctx.pbx_old = None
    ctx.pbx_old_src = os.path.abspath(args.pbx_old) if args.pbx_old else None
    if ctx.pbx_old_src:
        if not os.access(ctx.pbx_old_src, os.X_OK):
            raise SystemExit(f"run.py: --pbx-old {ctx.pbx_old_src} not "
                             "found")
        ctx.pbx_old_shown = os.path.relpath(ctx.pbx_old_src, ROOT) \
            if ctx.pbx_old_src.startswith(ROOT + "/") else ctx.pbx_old_src
    if os.cpu_count() < 2:
        raise SystemExit("run.py: needs two CPUs (server 0, load 1)")
    # Whole run bounded: a hang anywhere ends in the finally below.
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(1))
    signal.alarm(40 * 60)
    ctx.tmp = tempfile.mkdtemp(prefix="pbx-bench.")
    t_start = time.monotonic()
    try:
        # Others may rebuild build/pbx while this runs: use one snapshot.
        ctx.pbx = os.path.join(ctx.tmp, "pbx")
        shutil.copy2(ctx.pbx_src, ctx.pbx)
        if ctx.pbx_old_src:
            ctx.pbx_old = os.path.join(ctx.tmp, "pbx-old")
            shutil.copy2(ctx.pbx_old_src, ctx.pbx_old)
        setup_netns(ctx)
        ctx.fd_limit = raise_fd_limit()
        # This script sleeps beside the load on CPU 1, never on CPU 0.
        os.sched_setaffinity(0, {int(LOAD_CPU)})
        build(ctx)
        help_text = run_checked([ctx.pbx, "serve", "--help"], 10).stdout
        ctx.has_workers = "--workers" in help_text
        got = re.search(r"--idle-timeout SECONDS.*?\(default ([0-9.]+)",
                        help_text, re.S)
        ctx.idle_default = got.group(1) if got else "?"
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if ctx.quick else "full",
            "repetitions": ctx.reps, "seconds": ctx.seconds,
            "netns": ctx.netns, "pbx": ctx.pbx_shown,
            "pbx_sha256": sha256(ctx.pbx), "git": git_info(),
            "pbx_old": ctx.pbx_old_shown if ctx.pbx_old else None,
            "pbx_old_sha256": sha256(ctx.pbx_old) if ctx.pbx_old else None,
            "bulk_bytes": ctx.bulk_bytes if "bulk" in only else None,
            "fd_limit": ctx.fd_limit, "versions": versions(ctx),
            "cpus": os.cpu_count(),
            "background_cpu0_pct": background_cpu0(),
            "cflags": " ".join(CFLAGS),
        }
        results = {"meta": meta, "workloads": {}}
        tables = {}
        if "greeting" in only:
            rows = greeting_rows(ctx)
            run_rows(ctx, "greeting", rows,
                     greeting_like_run(ctx, greeting_load))
            tables["greeting"] = rows
        if "program" in only:
            rows = program_rows(ctx)
            run_rows(ctx, "program", rows,
                     greeting_like_run(ctx, greeting_load))
            tables["program"] = rows
        if "idle" in only:
            rows = idle_rows(ctx)
            run_rows(ctx, "idle", rows, idle_run(ctx))
            tables["idle"] = rows
        if "echo" in only:
            for conns in (1, 64):
                rows = echo_rows(ctx)
                run_rows(ctx, f"echo c{conns}", rows, echo_run(ctx, conns))
                tables[f"echo_c{conns}"] = rows
        if "loadgen" in only:
            rows = loadgen_rows(ctx)
            run_rows(ctx, "loadgen", rows, loadgen_run(ctx))
            tables["loadgen"] = rows
        if "bulk" in only:
            for direction in ("upload", "download"):
                rows = bulk_rows(ctx, direction)
                run_rows(ctx, f"bulk {direction}", rows,
                         bulk_run(ctx, direction))
                tables[f"bulk_{direction}"] = rows
        meta["elapsed_s"] = round(time.monotonic() - t_start)
        write_results(args.out, results, tables)
    finally:
        signal.alarm(0)
        kill_all()
        if args.keep:
            log(f"kept {ctx.tmp}")
        else:
            shutil.rmtree(ctx.tmp, ignore_errors=True)


# ------------------------------------------------------------ results file


KEYS = {"greeting": GREETING_KEYS, "program": GREETING_KEYS,
        "idle": IDLE_KEYS, "echo_c1": ECHO_KEYS, "echo_c64": ECHO_KEYS,
        "loadgen": LOADGEN_KEYS, "bulk_upload": BULK_KEYS,
        "bulk_download": BULK_KEYS}


def find(rows, kind=None, name=None):
    for r in rows:
        if (kind is None or r.kind == kind) and (name is None or
                                                 r.name == name):
            return r
    return None


def bar(bars, name, value, limit, ok, detail=""):
    bars.append({"bar": name, "value": value, "limit": limit,
                 "pass": ok, "detail": detail})


def evaluate_bars(tables, stats):
    bars = []
    g = tables.get("greeting")
    if g:
        ref = stats["greeting"][find(g, "ref").name]
        ev = stats["greeting"].get("pbx event")
        ng = stats["greeting"].get("nginx stream return, 1 worker")
        if ev:
            r1 = ratio(m(ev, "conn_s"), m(ref, "conn_s"))
            bar(bars, "greeting: pbx event conn/s vs epoll server", rx(r1),
                ">= 0.95x", r1 is not None and r1 >= 0.95)
            r2 = ratio(m(ev, "cpu_us"), m(ref, "cpu_us"))
            bar(bars, "greeting: pbx event CPU0 time/conn vs epoll server",
                rx(r2), "<= 1.10x", r2 is not None and r2 <= 1.10,
                f"{fmt(m(ev, 'cpu_us'), 2)} vs {fmt(m(ref, 'cpu_us'), 2)} "
                "us/conn")
        door = stats["greeting"].get("pbx event hello + door")
        if ev and door:
            r5 = ratio(m(door, "conn_s"), m(ev, "conn_s"))
            r6 = ratio(m(door, "cpu_us"), m(ev, "cpu_us"))
            bad = door["errors"] or door["failed_runs"]
            bar(bars, f"greeting: pbx event with {DOOR_RULES:,} rules and "
                "--max-per-ip vs pbx event without", rx(r5),
                ">= 0.95x, no errors", r5 is not None and r5 >= 0.95 and
                not bad,
                f"{fmt(m(door, 'conn_s'))} vs {fmt(m(ev, 'conn_s'))} conn/s;"
                f" CPU0 {fmt(m(door, 'cpu_us'), 2)} vs "
                f"{fmt(m(ev, 'cpu_us'), 2)} us/conn ({rx(r6)}); errors "
                f"{fmt(door['errors'])}, failed runs {door['failed_runs']}")
        if ev and ng:
            r3 = ratio(m(ev, "conn_s"), m(ng, "conn_s"))
            bar(bars, "greeting: pbx event conn/s vs nginx stream 1 worker",
                rx(r3), ">= 1.00x", r3 is not None and r3 >= 1.0)
            r4 = ratio(m(ev, "pss_kib"), m(ng, "pss_kib"))
            bar(bars, "greeting: pbx event memory (PSS) vs nginx 1 worker",
                rx(r4), "<= 0.25x", r4 is not None and r4 <= 0.25,
                f"{fmt(m(ev, 'pss_kib'))} vs {fmt(m(ng, 'pss_kib'))} KiB")
    p = tables.get("program")
    if p:
        st = stats["program"]
        ref = st[find(p, "ref").name]
        ev, fk = st.get("pbx event"), st.get("pbx fork")
        r1 = ratio(m(ev, "conn_s"), m(ref, "conn_s"))
        bar(bars, "program: pbx event conn/s vs posix_spawn server", rx(r1),
            ">= 0.95x", r1 is not None and r1 >= 0.95)
        peers = [(r.name, m(st[r.name], "conn_s")) for r in p
                 if r.kind == "peer" and r.name in st]
        peers = [(n, v) for n, v in peers if v is not None]
        if peers:
            best = max(peers, key=lambda x: x[1])
            r2 = ratio(m(ev, "conn_s"), best[1])
            bar(bars, "program: pbx event ahead of every peer", rx(r2),
                "> 1.00x the best peer", r2 is not None and r2 > 1.0,
                f"best peer: {best[0]}, {fmt(best[1])} conn/s")
        tcps = st.get("ucspi-tcp tcpserver")
        if tcps:
            r3 = ratio(m(fk, "conn_s"), m(tcps, "conn_s"))
            bar(bars, "program: pbx fork conn/s vs tcpserver", rx(r3),
                ">= 1.00x", r3 is not None and r3 >= 1.0)
    i = tables.get("idle")
    if i:
        row = find(i, "pbx")
        ev = stats["idle"].get(row.name) if row else None
        if ev:
            held = m(ev, "held")
            acc = m(ev, "accepted")
            b = m(ev, "bytes_per_conn")
            ok = b is not None and b <= 256 and held is not None and \
                held >= HOLD_CONNS and acc is not None and acc >= HOLD_CONNS
            bar(bars, "idle: pbx event bytes/conn above idle baseline (PSS)",
                f"{fmt(b)} B", "<= 256 B, 19,000 held", ok,
                f"held {fmt(held)} (client), accepted {fmt(acc)} (server) "
                f"of {HOLD_CONNS:,}; {row.name}")
    lg = tables.get("loadgen")
    if lg:
        st = stats["loadgen"]
        ref = st[find(lg, "ref").name]
        pb = st.get("pbx bench")
        r1 = ratio(m(pb, "conn_s"), m(ref, "conn_s"))
        bar(bars, "pbx bench conn/s vs independent loadgen (1 core)",
            rx(r1), ">= 0.95x", r1 is not None and r1 >= 0.95)
    for direction in ("upload", "download"):
        rows = tables.get(f"bulk_{direction}")
        if rows:
            bulk_bars(bars, direction, rows, stats[f"bulk_{direction}"])
    # Timed runs at thousands of calls/s: the up to 50 calls in flight
    # when a run is cut off are far below 1%. (In the program table they
    # are not, at ~2,000 calls/s; its column is shown but not judged.)
    diffs = []
    for wl in ("greeting", "loadgen"):
        for name, s in stats.get(wl, {}).items():
            d = s.get("count_diff_pct")
            row = find(tables[wl], name=name)
            if d is not None and row.kind != "ref":
                diffs.append((d, f"{wl}/{name}"))
    if diffs:
        worst = max(diffs)
        bar(bars, "pbx bench count vs the server's own count",
            f"{worst[0]:.3f}%", "within 1%", worst[0] <= 1.0,
            f"worst: {worst[1]}, over {len(diffs)} rows")
    return bars


def bulk_bars(bars, direction, rows, st):
    """pbx connect against the best peer and, with --pbx-old, against the
    old pbx. 0.95x: the median of 5 transfers moves by a few percent from
    one run to the next on this machine, so 5% below is still "no slower";
    a run whose bytes came up short counts as a failure of the bar."""
    pb = st.get("pbx connect")
    if not pb:
        return
    failed = pb["failed_runs"]
    bad = f"; {failed} run(s) of pbx connect failed" if failed else ""
    peers = [(r.name, m(st[r.name], "mib_s")) for r in rows
             if r.kind == "peer" and r.name in st]
    peers = [(n, v) for n, v in peers if v is not None]
    if peers:
        best = max(peers, key=lambda x: x[1])
        r1 = ratio(m(pb, "mib_s"), best[1])
        bar(bars, f"bulk {direction}: pbx connect MiB/s vs the best peer",
            rx(r1), ">= 0.95x", r1 is not None and r1 >= 0.95 and
            not failed,
            f"{fmt(m(pb, 'mib_s'))} vs {fmt(best[1])} MiB/s ({best[0]})"
            + bad)
    old = st.get("pbx connect (old)")
    if old:
        r2 = ratio(m(pb, "mib_s"), m(old, "mib_s"))
        bar(bars, f"bulk {direction}: pbx connect MiB/s vs pbx connect "
            "(old)", rx(r2), ">= 0.95x", r2 is not None and r2 >= 0.95 and
            not failed,
            f"{fmt(m(pb, 'mib_s'))} vs {fmt(m(old, 'mib_s'))} MiB/s; "
            f"client CPU {fmt(m(pb, 'client_cpu_ms_gib'))} vs "
            f"{fmt(m(old, 'client_cpu_ms_gib'))} ms/GiB" + bad)


def write_results(prefix, results, tables):
    stats = {}
    for wl, rows in tables.items():
        stats[wl] = {r.name: row_stats(r, KEYS[wl]) for r in rows
                     if r.available is None}
        results["workloads"][wl] = {"rows": [r.to_json() for r in rows],
                                    "stats": stats[wl]}
    results["bars"] = evaluate_bars(tables, stats)
    with open(prefix + ".json", "w") as f:
        json.dump(results, f, indent=1)
    with open(prefix + ".md", "w") as f:
        f.write(markdown(results, tables, stats))
    log(f"wrote {prefix}.md and {prefix}.json")


def notes_of(s):
    text = ""
    if s["failed_runs"]:
        text += (f"; **{s['failed_runs']} run(s) failed**: "
                 f"{s['first_error'].replace('|', '/')}")
    if s.get("server_exited"):
        text += f"; **server exited during {s['server_exited']} run(s)**"
    return text


def vs(s, ref, key):
    """'x ref' of one metric: the ratio of the medians."""
    return rx(ratio(m(s, key), m(ref, key)))


def table_greeting(out, rows, st, title):
    ref = st.get(find(rows, "ref").name, {})
    out.append(f"| {title} | conn/s | x ref | CPU0 us/conn | x ref | "
               "server PSS KiB | p99 us | errors | count diff | notes |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.available is not None:
            out.append(f"| {r.name} | {r.available} ||||||||||")
            continue
        s = st[r.name]
        fails = notes_of(s)
        cd = s.get("count_diff_pct")
        out.append(
            f"| {r.name}{' (ref)' if r.kind == 'ref' else ''} | "
            f"{cell(s, 'conn_s')} | {vs(s, ref, 'conn_s')} | "
            f"{cell(s, 'cpu_us', 2)} | {vs(s, ref, 'cpu_us')} | "
            f"{cell(s, 'pss_kib')} | {cell(s, 'p99_us')} | "
            f"{fmt(s['errors'])} | {'-' if cd is None else f'{cd:.2f}%'} | "
            f"{r.note}{fails} |")


def table_echo(out, rows, st, conns):
    ref = st.get(find(rows, "ref").name, {})
    out.append(f"| echo, -c {conns}, 4 KiB | round trips/s | x ref | "
               "p99 us | CPU0 us/round | x ref | errors | notes |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.available is not None:
            out.append(f"| {r.name} | {r.available} |||||||")
            continue
        s = st[r.name]
        fails = notes_of(s)
        out.append(
            f"| {r.name}{' (ref)' if r.kind == 'ref' else ''} | "
            f"{cell(s, 'rounds_s')} | {vs(s, ref, 'rounds_s')} | "
            f"{cell(s, 'p99_us')} | {cell(s, 'cpu_us', 2)} | "
            f"{vs(s, ref, 'cpu_us')} | "
            f"{fmt(s['errors'])} | {r.note}{fails} |")


def table_idle(out, rows, st):
    out.append("| idle, 19,000 held | held (client) | accepted (server) | "
               "bytes/conn (PSS) | bytes/conn (RSS) | idle PSS KiB | "
               "held PSS KiB | server fds | errors | notes |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.available is not None:
            out.append(f"| {r.name} | {r.available} |||||||||")
            continue
        s = st[r.name]
        fails = notes_of(s)
        out.append(
            f"| {r.name} | {cell(s, 'held')} | {cell(s, 'accepted')} | "
            f"{cell(s, 'bytes_per_conn')} | "
            f"{cell(s, 'rss_bytes_per_conn')} | {cell(s, 'base_pss_kib')} | "
            f"{cell(s, 'pss_kib')} | {cell(s, 'fds')} | {fmt(s['errors'])} | "
            f"{r.note}{fails} |")


def table_loadgen(out, rows, st):
    ref = st.get(find(rows, "ref").name, {})
    out.append("| load generator on CPU 1 -> bench/epoll_greet on CPU 0 | "
               "conn/s | x ref | CPU1 us/conn (generator) | CPU0 busy % | "
               "CPU1 busy % | errors | count diff | notes |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = st[r.name]
        cd = s.get("count_diff_pct")
        out.append(
            f"| {r.name}{' (ref)' if r.kind == 'ref' else ''} | "
            f"{cell(s, 'conn_s')} | {vs(s, ref, 'conn_s')} | "
            f"{cell(s, 'load_cpu_us', 2)} | {cell(s, 'cpu0_util')} | "
            f"{cell(s, 'cpu1_util')} | {fmt(s['errors'])} | "
            f"{'-' if cd is None else f'{cd:.2f}%'} | {r.note} |")


def table_bulk(out, rows, st, direction):
    ref = st.get(find(rows, "ref").name, {})
    out.append(f"| bulk {direction} | MiB/s | x ref | client CPU ms/GiB | "
               "x ref | CPU0+CPU1 ms/GiB | x ref | CPU0 busy % | "
               "CPU1 busy % | failed runs | notes |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.available is not None:
            out.append(f"| {r.name} | {r.available} ||||||||||")
            continue
        s = st[r.name]
        out.append(
            f"| {r.name}{' (ref)' if r.kind == 'ref' else ''} | "
            f"{cell(s, 'mib_s')} | {vs(s, ref, 'mib_s')} | "
            f"{cell(s, 'client_cpu_ms_gib')} | "
            f"{vs(s, ref, 'client_cpu_ms_gib')} | "
            f"{cell(s, 'cpu01_ms_gib')} | {vs(s, ref, 'cpu01_ms_gib')} | "
            f"{cell(s, 'cpu0_util')} | "
            f"{cell(s, 'cpu1_util')} | {fmt(s['failed_runs'])} | "
            f"{r.note}{notes_of(s)} |")


def markdown(results, tables, stats):
    meta = results["meta"]
    out = ["# pbx benchmarks", ""]
    out.append(f"Generated by `python3 bench/run.py"
               f"{' --quick' if meta['mode'] == 'quick' else ''}` on "
               f"{meta['date']} ({meta['mode']} run: {meta['repetitions']} "
               f"repetition(s) of {fmt_num(meta['seconds'])} s, interleaved; "
               f"{meta['elapsed_s']} s in all). Cells are medians with "
               "(min-max) over the repetitions; `x ref` is the ratio of "
               "medians to the workload's reference row.")
    out.append("")
    out.append(f"Setup: {meta['cpus']} CPUs; every server pinned to CPU 0 "
               "and every load generator to CPU 1 with `taskset`; "
               + ("inside a private network namespace (`unshare -n`, "
                  "`ip link set lo up`, ip_local_port_range 10000-65535 "
                  "there)" if meta["netns"] else
                  "on the host's loopback (no network namespace)")
               + f"; fd limit {meta['fd_limit'][0]} soft / "
               f"{meta['fd_limit'][1]} hard. CPU 0 was "
               f"{meta['background_cpu0_pct']}% busy with nothing running "
               "(background noise). CPU0 us/conn is the busy time of CPU 0 "
               "from /proc/stat (user+nice+system+irq+softirq+steal) over "
               "the run divided by the calls completed: the server's "
               "process time plus the kernel work done on its CPU. Server "
               "memory is PSS summed over the server's process tree "
               "(smaps_rollup), the peak of samples at 40% and 80% of the "
               "run; kernel socket memory is not included.")
    out.append("")
    out.append("## Bars")
    out.append("")
    out.append("| bar | value | limit | result | detail |")
    out.append("|---|---|---|---|---|")
    for b in results["bars"]:
        out.append(f"| {b['bar']} | {b['value']} | {b['limit']} | "
                   f"**{'PASS' if b['pass'] else 'FAIL'}** | {b['detail']} |")
    out.append("")
    if "greeting" in tables:
        out += ["## Greeting, built in", "",
                "`pbx bench -c 50 --expect 'Hello, person from 127.0.0.1:'`"
                " against each server; reference: bench/epoll_greet.c. "
                "`count diff`: |served - counted| / served, where served "
                "is the server's own `served N connections` (summed over "
                "workers) and counted is pbx bench's; nginx prints no "
                "count. `pbx event hello + door` is `pbx event` behind the "
                f"door: `--rules` with {DOOR_RULES:,} rules (written by "
                "run.py's door_rules(): one `127.0.0.0/8 allow`, the rest "
                "deny /24s in 10.0.0.0/8 and /32s in 198.18.0.0/15 and "
                "127.0.0.3-254, addresses the load never uses) and "
                f"`--max-per-ip {DOOR_MAX_PER_IP}`; a denied call would "
                "fail pbx bench's --expect and count as an error.", ""]
        table_greeting(out, tables["greeting"], stats["greeting"],
                       "greeting, built in")
        out.append("")
    if "program" in tables:
        out += ["## Greeting through a program", "",
                "Every server runs the same static program, bench/greet.c "
                "(`Hello, person from IP:PORT`), once per connection; "
                "`pbx bench -c 50 --expect ...`. Reference: "
                "bench/spawn_server.c. `count diff` (the server's own "
                "count against pbx bench's) includes the up to 50 calls in "
                "flight that the timed run cuts off, about 1% at these "
                "rates; it is shown, not judged.", ""]
        table_greeting(out, tables["program"], stats["program"],
                       "greeting via a program")
        out.append("")
    if "idle" in tables:
        out += ["## Idle connections", "",
                f"`pbx bench --hold --source 127.0.0.1,127.0.0.2 -c "
                f"{HOLD_CONNS}` holds connections open; the server's memory "
                "(PSS summed over its process tree) is read before the load "
                "(idle baseline) and while the connections stand (the "
                "sample with the most fds open). bytes/conn = (PSS held - "
                "PSS idle) / connections the server accepted (its fds above "
                "the idle count, per socket a connection). nginx's `return` "
                "closes at once, so "
                "two honest ways to keep an nginx stream session open are "
                "measured: proxying to an upstream that holds the "
                "connection (what a stream proxy really does: two sockets "
                "and the proxy's buffers per session), and a session "
                "parked in the preread phase (one socket, no upstream).", ""]
        table_idle(out, tables["idle"], stats["idle"])
        out.append("")
    for conns in (1, 64):
        key = f"echo_c{conns}"
        if key in tables:
            out += [f"## Echo, {conns} connection(s)", "",
                    f"`pbx bench -c {conns} --send @4k.bin --expect-bytes "
                    "4096 --rounds 0`: each connection sends 4 KiB, waits "
                    "for the 4 KiB back, and again, until the end. "
                    "Reference: bench/epoll_echo.c.", ""]
            table_echo(out, tables[key], stats[key], conns)
            out.append("")
    if "loadgen" in tables:
        out += ["## pbx bench against an independent load generator", "",
                "Both drive bench/epoll_greet.c (CPU 0) from CPU 1 with 50 "
                "calls in flight. The independent generator is "
                "bench/loadgen.c, written for this suite (Debian has no "
                "tcpkali): epoll, non-blocking connect, read to EOF, "
                "close, no code shared with pbx. `count diff` compares the "
                "calls a generator counted with the server's own count "
                "(`served N connections` at SIGTERM); the difference "
                "includes up to 50 calls in flight when the run ends.", ""]
        table_loadgen(out, tables["loadgen"], stats["loadgen"])
        out.append("")
    if "bulk_upload" in tables or "bulk_download" in tables:
        size = meta.get("bulk_bytes") or {}
        up, down = size.get("upload", 0), size.get("download", 0)
        old = (f" `pbx connect (old)` is --pbx-old {meta['pbx_old']} "
               f"(sha256 {meta['pbx_old_sha256']}), run beside the pbx "
               "measured, same ends." if meta.get("pbx_old") else "")
        out += ["## Bulk transfer through a client", "",
                "Each run moves zeros through one client between a pipe "
                "and a socket; the client and the fixed end of its pipe "
                "on CPU 1, the server on CPU 0. Upload "
                f"({up >> 20:,} MiB): `bench/bin/bulk feed {up}` (1 MiB "
                "writes) into the client's stdin, client stdout to "
                "/dev/null, server `pbx serve -v --model event "
                "127.0.0.1:0 discard` (the same sink for every row; its "
                "end line counts the bytes that arrived). Download "
                f"({down >> 20:,} MiB): server `bench/bin/bulk send` "
                "(blocking 1 MiB writes, then the close), client stdin "
                "/dev/null, client stdout into `bench/bin/bulk count` "
                "(splices the pipe into /dev/null, counts). MiB/s = bytes "
                "/ wall time from starting the client until the sink has "
                "seen the end (upload) or the counter has read EOF "
                "(download); a run where fewer bytes arrived is an error, "
                "not a number. client CPU = the client's own user+system "
                "time (its rusage from wait4) per GiB. On loopback much "
                "of TCP's work, the receiving side's included, runs on "
                "whichever CPU pushes the data or the ACK that frees "
                "room, so how it splits between CPU 0 and CPU 1 moves "
                "with the client's pattern: CPU0+CPU1 ms/GiB (busy time "
                "of both CPUs from /proc/stat, feeder or counter and "
                "server included, the same for every row) is the "
                "transfer's whole cost. Reference: bench/bulk.c client, "
                "one blocking splice(2) a chunk straight between the pipe "
                "and the socket." + old, ""]
        for direction in ("upload", "download"):
            key = f"bulk_{direction}"
            if key in tables:
                table_bulk(out, tables[key], stats[key], direction)
                out.append("")
    out += ["## Versions", "", "| component | version |", "|---|---|"]
    for k, v in meta["versions"].items():
        out.append(f"| {k} | {v} |")
    out += ["", "## Commands", "",
            "Exact commands of the first repetition (ports differ between "
            "runs; run them inside `unshare -n` after `ip link set lo up`, "
            "as run.py does, or pick a free port). bench/bin/ is built by "
            "run.py from bench/*.c with `cc " + meta["cflags"] + "` "
            "(greet also -static).", ""]
    for wl, rows in tables.items():
        out.append(f"### {wl}")
        out.append("")
        for r in rows:
            if r.commands is None:
                continue
            out.append(f"- {r.name}")
            out.append("")
            out.append("  ```sh")
            for h in r.commands.get("helpers") or []:
                out.append(f"  {h} &")
            out.append(f"  {r.commands['server']} &")
            if r.commands.get("load"):
                out.append(f"  {r.commands['load']}")
            out.append("  ```")
            for name, text in (r.commands.get("files") or {}).items():
                out.append("")
                out.append(f"  {name}:")
                out.append("")
                out.append("  ```")
                out += ["  " + line for line in text.splitlines()]
                out.append("  ```")
            out.append("")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
