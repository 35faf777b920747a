# SPDX-License-Identifier: MIT
"""Helpers for the pbx end-to-end tests (python3 standard library only).

Every process a test starts runs in its own session (so its own process
group) and is killed with its whole group when the test ends. A server is
started on port 0 and its real port is read back from the readiness line
`pbx: listening on ADDR`. Every wait is bounded; expectations are written by
hand from the CLI contract (/work/cli-spec.md), never computed by pbx.
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

PBX = None  # absolute path of the binary under test, set by run.py
HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(os.path.dirname(HERE), "peers")
GOLDEN = os.path.join(HERE, "golden")
PY = sys.executable
MODELS = ["serial", "fork", "event"]

# Every process is started through this prefix when it works (see run.py):
# setpriv --pdeathsig KILL kills it if the test thread that started it dies
# with the runner (say, killed by an outer timeout), so nothing is left over.
LAUNCH_PREFIX = []
ALL_TESTS = []  # every T made, for a last sweep when the runner is stopped

# Lines a sanitizer writes when it finds a bug in the binary under test.
SANITIZER_RE = re.compile(
    r"ERROR: (Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer|"
    r"runtime error: |SUMMARY: \w+Sanitizer")

# Variables the sanitizers read; they pass through to pbx when set.
SAN_VARS = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")


class Failure(Exception):
    """A test expectation did not hold; first line short, the rest details."""


class Skip(Exception):
    """A test cannot run here (missing tool or kernel feature)."""


# ---------------------------------------------------------------------------
# Test registry
# ---------------------------------------------------------------------------

class TestSpec:
    def __init__(self, name, fn, args, timeout, exclusive):
        self.name = name
        self.fn = fn
        self.args = args
        self.timeout = timeout
        self.exclusive = exclusive


REGISTRY = []


def test(params=None, timeout=30, exclusive=False):
    """Register fn(t[, param]) as test `<file>.<name>` or `<file>.<name>[param]`.

    exclusive tests run alone (load-sensitive timing or counts)."""
    def deco(fn):
        mod = fn.__module__.rsplit(".", 1)[-1]
        if mod.startswith("test_"):
            mod = mod[len("test_"):]
        base = f"{mod}.{fn.__name__.removeprefix('test_')}"
        if params is None:
            REGISTRY.append(TestSpec(base, fn, (), timeout, exclusive))
        else:
            for p in params:
                label = p[0] if isinstance(p, tuple) else p
                args = p[1:] if isinstance(p, tuple) else (p,)
                REGISTRY.append(TestSpec(f"{base}[{label}]", fn, args,
                                         timeout, exclusive))
        return fn
    return deco


# ---------------------------------------------------------------------------
# Small assertion helpers: short first line, both values shown
# ---------------------------------------------------------------------------

def short(v, limit=160):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + f"...({len(r)} chars)"


def eq(actual, expected, what):
    if actual != expected:
        raise Failure(f"{what}: expected {short(expected)}, got {short(actual)}")


def check(cond, what):
    if not cond:
        raise Failure(what)


def match(pattern, text, what):
    m = re.fullmatch(pattern, text)
    if not m:
        raise Failure(f"{what}: {short(text)} does not match /{pattern}/")
    return m


def need_tool(name, package):
    path = shutil.which(name)
    if not path:
        raise Skip(f"'{name}' is not installed (Debian package: {package})")
    return path


def wait_until(pred, timeout, interval=0.02):
    """Poll pred() until it returns a true value or timeout passes; returns
    the last value. Used only where no readiness signal exists (/proc)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def base_env(**extra):
    """A small, fixed environment for pbx (plus sanitizer settings)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C"}
    for k in SAN_VARS:
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(extra)
    return env


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

class Proc:
    """A child process in its own session, with stdout and stderr collected
    by reader threads. stdin: None (/dev/null), "pipe" (kept open: write()
    and close_stdin()), or bytes (written by a thread, then closed)."""

    def __init__(self, t, argv, stdin=None, env=None, is_pbx=False, cwd=None):
        self.t = t
        self.argv = [str(a) for a in argv]
        self.is_pbx = is_pbx
        self.cond = threading.Condition()
        self.out = bytearray()
        self.out_eof = False
        self.err = bytearray()
        self.err_eof = False
        self.rc = None
        if stdin is None:
            stdin_arg = subprocess.DEVNULL
        else:
            stdin_arg = subprocess.PIPE
        self.started = time.monotonic()
        self.p = subprocess.Popen(LAUNCH_PREFIX + self.argv, stdin=stdin_arg,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env, cwd=cwd, close_fds=True,
                                  start_new_session=True)
        self.pid = self.p.pid
        t.procs.append(self)
        self.readers = [
            threading.Thread(target=self._reader, args=(self.p.stdout, "out"), daemon=True),
            threading.Thread(target=self._reader, args=(self.p.stderr, "err"), daemon=True),
        ]
        for r in self.readers:
            r.start()
        if isinstance(stdin, (bytes, bytearray)):
            data = bytes(stdin)
            threading.Thread(target=self._writer, args=(data,), daemon=True).start()

    def _reader(self, f, which):
        fd = f.fileno()
        while True:
            try:
                b = os.read(fd, 65536)
            except OSError:
                b = b""
            with self.cond:
                if b:
                    getattr(self, which).extend(b)
                else:
                    setattr(self, which + "_eof", True)
                self.cond.notify_all()
            if not b:
                break

    def _writer(self, data):
        try:
            self.p.stdin.write(data)
            self.p.stdin.close()
        except (OSError, ValueError):
            pass

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def close_stdin(self):
        try:
            self.p.stdin.close()
        except (OSError, ValueError):
            pass

    # stderr as text lines (complete lines only unless final)
    def err_lines(self):
        with self.cond:
            text = self.err.decode(errors="replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return lines

    def stdout(self):
        with self.cond:
            return bytes(self.out)

    def wait_line(self, pattern, timeout=10, start=0, what=None):
        """Wait for a complete stderr line at index >= start matching pattern
        (fullmatch). Returns (index, match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                text = self.err.decode(errors="replace")
                lines = text.split("\n")[:-1]  # complete lines only
                for i in range(start, len(lines)):
                    m = rx.fullmatch(lines[i])
                    if m:
                        return i, m
                left = deadline - time.monotonic()
                if self.err_eof or left <= 0:
                    break
                self.cond.wait(min(left, 0.1))
        state = "stderr closed" if self.err_eof else f"none within {timeout} s"
        raise Failure(f"{what or 'stderr line'} /{pattern}/ from {self.name()}: {state}")

    def wait_stdout(self, pred, timeout=10, what="stdout"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(bytes(self.out)):
                left = deadline - time.monotonic()
                if self.out_eof or left <= 0:
                    if pred(bytes(self.out)):
                        break
                    raise Failure(f"{what} of {self.name()}: got {short(bytes(self.out))}"
                                  f" ({'EOF' if self.out_eof else 'timeout'})")
                self.cond.wait(min(left, 0.1))
            return bytes(self.out)

    def wait_eof(self, timeout=10):
        """Wait for both output pipes to close (all holders gone)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (self.out_eof and self.err_eof):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
        return True

    def wait(self, timeout=10):
        """Wait for exit; returns the status (negative: killed by signal)."""
        try:
            self.rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.name()} did not exit within {timeout} s")
        return self.rc

    def exit_time(self):
        return time.monotonic() - self.started

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.p.stdin,):
            try:
                if f:
                    f.close()
            except OSError:
                pass

    def name(self):
        words = self.argv
        if self.is_pbx and PBX in words:
            words = ["pbx"] + words[words.index(PBX) + 1:]
        s = " ".join(words)
        return s if len(s) < 100 else s[:97] + "..."


class Server(Proc):
    """`pbx serve`: waits for the readiness line and learns the real port."""

    def __init__(self, t, addr, handler, opts, env=None, prefix=(), wait_ready=True,
                 launcher=()):
        argv = list(prefix) + list(launcher) + [PBX, "serve"] + list(opts) + [addr] + list(handler)
        super().__init__(t, argv, env=env if env is not None else base_env(), is_pbx=True)
        self.requested = addr
        self.quiet = "-q" in opts or "--quiet" in opts
        self.served = None
        if addr.startswith(":"):
            self.host_text = "[::]"
        else:
            self.host_text = addr.rsplit(":", 1)[0]
        self.host = self.host_text.strip("[]")
        if self.host == "::":
            self.connect_host = "::1"
        else:
            self.connect_host = self.host
        self.port = None
        self.ready_index = None
        if wait_ready:
            i, m = self.wait_line(
                r"pbx: listening on " + re.escape(self.host_text) + r":(\d+)",
                timeout=10, what="readiness line")
            self.ready_index = i
            self.port = int(m.group(1))
            check(self.port != 0, "listening line shows port 0, not the kernel's port")
            before = self.err_lines()[:i]
            for line in before:
                check(line.startswith("pbx: trace: "),
                      f"unexpected stderr before the listening line: {short(line)}")

    def addr(self):
        return (self.connect_host, self.port)

    def check_alive(self, when=""):
        rc = self.p.poll()
        if rc is not None:
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with {rc}"
            raise Failure(f"pbx serve {how}{' ' + when if when else ''}")

    def listen_line(self):
        return f"pbx: listening on {self.host_text}:{self.port}"

    # "pbx: served 1 connection", "pbx: served N connections" for any
    # other N (0 too); group 1 is the count.
    SERVED = re.compile(r"pbx: served (1(?= connection$)|(?!1 )\d+(?= connections$))"
                        r" connections?$")

    def err_lines(self):
        """stderr lines; once stop() has checked the closing count line
        ('pbx: served N connections'), without it (see self.served)."""
        lines = super().err_lines()
        if self.served is not None:
            i = self.served_index(lines)
            if i is not None:
                lines = lines[:i] + lines[i + 1:]
        return lines

    CHILD_END = "pbx: end "

    def served_index(self, lines):
        """Index of the closing count line: the last line, or followed
        only by fork children's end events."""
        for i in range(len(lines) - 1, -1, -1):
            if self.SERVED.match(lines[i]):
                return i
            if not lines[i].startswith(self.CHILD_END):
                return None
        return None

    def lines_after_ready(self):
        return self.err_lines()[self.ready_index + 1:]

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Signal the server and expect exit status 0 within timeout."""
        self.signal(sig)
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"pbx serve did not exit within {timeout} s of "
                          f"{signal.Signals(sig).name}")
        self.rc = rc
        self.wait_eof(3)  # collect the last stderr lines
        if rc < 0:
            raise Failure(f"pbx serve was killed by {signal.Signals(-rc).name} "
                          f"(after {signal.Signals(sig).name})")
        eq(rc, 0, f"pbx serve exit status after {signal.Signals(sig).name}")
        eq(self.stdout(), b"", "pbx serve stdout")
        # A stopping server says how many callers it answered (not with -q).
        lines = super().err_lines()
        if self.quiet:
            check(not any(self.SERVED.match(l) for l in lines),
                  "pbx serve -q printed its closing count")
        elif self.ready_index is not None:
            # Fork-model children finish the call they are on after the
            # server has gone, and their end events may follow its count.
            i = self.served_index(lines)
            check(i is not None and all(l.startswith(self.CHILD_END) for l in lines[i + 1:]),
                  f"last stderr line is not 'pbx: served N connections': "
                  f"{short(lines[-1]) if lines else '(none)'}")
            self.served = int(self.SERVED.match(lines[i]).group(1))
        return rc


class Result:
    def __init__(self, rc, out, err, elapsed, proc):
        self.rc = rc
        self.out = out
        self.err = err  # str
        self.elapsed = elapsed
        self.proc = proc

    def err_lines(self):
        return self.err.splitlines()


# ---------------------------------------------------------------------------
# The per-test context
# ---------------------------------------------------------------------------

class T:
    def __init__(self, name):
        ALL_TESTS.append(self)
        self.name = name
        self.procs = []
        self.socks = []
        self.cleanups = []
        self.tmp = None
        self.dead = False

    # -- processes --------------------------------------------------------
    def spawn(self, argv, stdin=None, env=None, is_pbx=False, cwd=None):
        if self.dead:
            raise Failure("test was stopped by the watchdog")
        return Proc(self, argv, stdin=stdin, env=env, is_pbx=is_pbx, cwd=cwd)

    def pbx(self, args, stdin=None, env=None, prefix=(), launcher=()):
        """Start pbx ARGS in the background."""
        return self.spawn(list(prefix) + list(launcher) + [PBX] + list(args), stdin=stdin,
                          env=env if env is not None else base_env(), is_pbx=True)

    def run_pbx(self, args, stdin=b"", timeout=10, env=None, prefix=()):
        """Run pbx ARGS to completion; stdin bytes (or None for /dev/null)."""
        p = self.pbx(args, stdin=stdin, env=env, prefix=prefix)
        rc = p.wait(timeout)
        p.wait_eof(5)
        return Result(rc, p.stdout(), p.err.decode(errors="replace"),
                      p.exit_time(), p)

    def run(self, argv, stdin=b"", timeout=10, env=None):
        """Run any program to completion (not pbx)."""
        p = self.spawn(argv, stdin=stdin, env=env)
        rc = p.wait(timeout)
        p.wait_eof(5)
        return Result(rc, p.stdout(), p.err.decode(errors="replace"),
                      p.exit_time(), p)

    def serve(self, addr="127.0.0.1:0", handler=(), opts=(), env=None, prefix=(),
              wait_ready=True, launcher=()):
        if self.dead:
            raise Failure("test was stopped by the watchdog")
        return Server(self, addr, handler, opts, env=env, prefix=prefix,
                      wait_ready=wait_ready, launcher=launcher)

    # -- sockets ----------------------------------------------------------
    def dial(self, host, port, source=None, timeout=10):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        self.socks.append(s)
        s.settimeout(timeout)
        if source is not None:
            s.bind(source)
        try:
            s.connect((host, port))
        except OSError as e:
            raise Failure(f"connect to {host}:{port}: {e}")
        return s

    def listener(self, host="127.0.0.1", backlog=16, listen=True):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        self.socks.append(s)
        s.bind((host, 0))
        if listen:
            s.listen(backlog)
        return s

    def tmpdir(self):
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix="pbx-e2e-")
        return self.tmp

    def netns(self, **kw):
        return NetNS(self, **kw)

    def py_server(self, handler, host="127.0.0.1"):
        return PyServer(self, handler, host)

    # -- teardown ---------------------------------------------------------
    def kill_all(self):
        self.dead = True
        for s in list(self.socks):
            try:
                s.close()
            except OSError:
                pass
        for p in list(self.procs):
            p.kill_group()

    def cleanup(self):
        self.kill_all()
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:
                pass
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def sanitizer_reports(self):
        reports = []
        for p in self.procs:
            if not p.is_pbx:
                continue
            for line in p.err_lines():
                if SANITIZER_RE.search(line):
                    reports.append(f"{p.name()}: {line.strip()}")
                    break
        return reports

    def details(self):
        """stderr tails of the pbx processes, for a failure report."""
        out = []
        for p in self.procs:
            if not p.is_pbx:
                continue
            lines = p.err_lines()
            rc = p.p.returncode
            out.append(f"$ {p.name()}   (status {rc})")
            for line in lines[-12:]:
                out.append("  " + line)
        return out


# ---------------------------------------------------------------------------
# Python-side clients
# ---------------------------------------------------------------------------

def recv_all(s, timeout=10, what="data"):
    """Read until EOF; bounded."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure(f"{what}: no EOF within {timeout} s (got {len(buf)} bytes:"
                          f" {short(bytes(buf[:80]))})")
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except OSError as e:
            raise Failure(f"{what}: {e} after {len(buf)} bytes")
        if not b:
            return bytes(buf)
        buf.extend(b)


def recv_exact(s, n, timeout=10, what="data"):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure(f"{what}: got {len(buf)} of {n} bytes within {timeout} s")
        s.settimeout(left)
        try:
            b = s.recv(n - len(buf))
        except socket.timeout:
            continue
        except OSError as e:
            raise Failure(f"{what}: {e} after {len(buf)} of {n} bytes")
        if not b:
            raise Failure(f"{what}: EOF after {len(buf)} of {n} bytes")
        buf.extend(b)
    return bytes(buf)


def nothing_arrives(s, seconds):
    """True if no byte and no EOF arrives within seconds (an absence check)."""
    s.settimeout(seconds)
    try:
        b = s.recv(1, socket.MSG_PEEK)
    except socket.timeout:
        return True
    except OSError:
        return False
    return False


def exchange(s, data, timeout=20, what="echo"):
    """Send data (from a thread) while reading; half-close after sending;
    return everything read until EOF."""
    err = []

    def sender():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    s.settimeout(timeout)
    th = threading.Thread(target=sender, daemon=True)
    th.start()
    got = recv_all(s, timeout, what)
    th.join(timeout)
    if err:
        raise Failure(f"{what}: sending failed: {err[0]}")
    return got


def set_linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def fill_without_reading(s, limit, seconds=2.0):
    """Send up to limit bytes without ever reading, stopping when the path
    is full (nothing more can be sent for 0.3 s) or after seconds."""
    chunk = os.urandom(65536)
    sent = 0
    deadline = time.monotonic() + seconds
    s.setblocking(False)
    stalled_since = None
    while sent < limit and time.monotonic() < deadline:
        try:
            n = s.send(chunk)
            sent += n
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            if stalled_since is None:
                stalled_since = now
            elif now - stalled_since > 0.3:
                break
            time.sleep(0.01)
        except OSError:
            break
    s.setblocking(True)
    return sent


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago on host (for --source HOST:PORT)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def hello(host, port):
    h = f"[{host}]" if ":" in host else host
    return f"Hello, person from {h}:{port}\n".encode()


def fmt_addr(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------------------
# /proc checks
# ---------------------------------------------------------------------------

def children(pid):
    """Direct children of pid as [(child_pid, state)]."""
    kids = set()
    found_children_file = False
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    found_children_file = True
                    kids.update(int(x) for x in f.read().split())
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        return []
    if not found_children_file:
        # Kernels without CONFIG_PROC_CHILDREN (or gVisor): scan /proc.
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            st = proc_stat(int(d))
            if st and st[1] == pid:
                kids.add(int(d))
    out = []
    for k in sorted(kids):
        st = proc_stat(k)
        if st:
            out.append((k, st[0]))
    return out


def zombies(pid):
    """Children of pid that exited and were not reaped (state Z)."""
    return [c for c, state in children(pid) if state == "Z"]


def proc_stat(pid):
    """(state, ppid) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = s[s.rfind(")") + 2:].split()
    return rest[0], int(rest[1])


def fd_list(pid):
    """{fd: link target} of the open fds of pid."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return out
    for n in names:
        try:
            out[int(n)] = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            pass
    return out


def listening_port_of(pid):
    """The TCP port pid listens on, found through its socket inodes."""
    inodes = set()
    for target in fd_list(pid).values():
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:
                return int(cols[1].rsplit(":", 1)[1], 16)
    return None


# ---------------------------------------------------------------------------
# Network namespaces: nothing leaves the machine from inside one
# ---------------------------------------------------------------------------

class NetNS:
    """A network (and mount) namespace held by a sleeping process; commands
    run in it through self.prefix (nsenter). Only the loopback device is up
    unless setup adds more. hosts / resolv: file contents bind-mounted over
    /etc/hosts and /etc/resolv.conf inside the namespace."""

    def __init__(self, t, hosts=None, resolv=None, setup=""):
        for tool, pkg in (("unshare", "util-linux"), ("nsenter", "util-linux"),
                          ("ip", "iproute2")):
            need_tool(tool, pkg)
        parts = ["set -e", "ip link set lo up"]
        d = t.tmpdir()
        if hosts is not None:
            path = os.path.join(d, "hosts")
            with open(path, "w") as f:
                f.write(hosts)
            parts.append(f"mount --bind {path} /etc/hosts")
        if resolv is not None:
            path = os.path.join(d, "resolv.conf")
            with open(path, "w") as f:
                f.write(resolv)
            parts.append(f"mount --bind {path} /etc/resolv.conf")
        if setup:
            parts.append(setup)
        parts.append("echo ready")
        parts.append("exec sleep 300")
        script = "\n".join(parts)
        self.holder = t.spawn(["unshare", "--net", "--mount", "--propagation", "private",
                               "sh", "-c", script])
        try:
            self.holder.wait_stdout(lambda b: b"ready\n" in b, timeout=10,
                                    what="network namespace setup")
        except Failure:
            err = self.holder.err.decode(errors="replace").strip().splitlines()
            raise Skip("cannot make a network namespace (unshare --net --mount): "
                       + (err[-1] if err else "no reason given"))
        self.prefix = ["nsenter", "-t", str(self.holder.pid), "--net", "--mount", "--"]


# ---------------------------------------------------------------------------
# In-process python servers (peers for pbx connect)
# ---------------------------------------------------------------------------

class PyServer:
    """A loopback TCP server in threads. handler(conn, peer, srv) runs per
    connection; srv.event(name, value) records what happened, in order."""

    def __init__(self, t, handler, host="127.0.0.1"):
        self.t = t
        self.lsock = t.listener(host)
        self.host = host
        self.port = self.lsock.getsockname()[1]
        self.handler = handler
        self.cond = threading.Condition()
        self.events = []
        self.peers = []
        self.stop_flag = False
        self.lsock.settimeout(0.1)
        threading.Thread(target=self._accept_loop, daemon=True).start()
        t.cleanups.append(self.stop)

    def _accept_loop(self):
        while not self.stop_flag:
            try:
                conn, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.t.socks.append(conn)
            conn.settimeout(15)
            with self.cond:
                self.peers.append(peer[:2])
                self.cond.notify_all()
            threading.Thread(target=self._run, args=(conn, peer[:2]), daemon=True).start()

    def _run(self, conn, peer):
        try:
            self.handler(conn, peer, self)
        except Exception as e:
            self.event("error", repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def event(self, name, value=None):
        with self.cond:
            self.events.append((name, value))
            self.cond.notify_all()

    def wait_event(self, name, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for n, v in self.events:
                    if n == name:
                        return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"python peer server: no '{name}' event within {timeout} s"
                                  f" (events: {short(self.events)})")
                self.cond.wait(min(left, 0.1))

    def has_event(self, name):
        with self.cond:
            return any(n == name for n, _ in self.events)

    def stop(self):
        self.stop_flag = True


def read_to_eof(conn):
    buf = bytearray()
    while True:
        b = conn.recv(65536)
        if not b:
            return bytes(buf)
        buf.extend(b)


def env_dict(entries, what="environment"):
    keys = [e.split("=", 1)[0] for e in entries]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    check(not dupes, f"{what} has duplicate entries for {dupes}")
    return dict(e.split("=", 1) if "=" in e else (e, None) for e in entries)


def check_env(got, want, what="program environment"):
    diffs = [f"{k}: expected {want.get(k)!r}, got {got.get(k)!r}"
             for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
    if diffs:
        raise Failure(f"{what}: " + "; ".join(diffs[:4])
                      + (f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else ""))


def load_json(data, what):
    try:
        return json.loads(data.decode())
    except (ValueError, UnicodeDecodeError):
        raise Failure(f"{what}: not the peer's JSON: {short(data)}")
