# SPDX-License-Identifier: MIT
"""A UCSPI program for the e2e tests: reports what it was given as JSON.
It is a peer, not a test: test_exec.py and test_connect.py check the report.

  ucspi_dump.py server [--exit N]
      run by `pbx serve ADDR -- ...`: the socket is fd 0 and fd 1; writes
      the report to fd 1 (the socket) and exits N (default 0).
  ucspi_dump.py client [--exit N]
      run by `pbx connect ADDR -- ...`: the socket is fd 6 (read) and fd 7
      (write); writes "ping\\n" to fd 7, shuts down writing, reads fd 6 until
      EOF, then writes the report (with what it read) to fd 1 (stdout).

The report: argv, pid, ppid, env (the exec-time environment, read from
/proc/self/environ, so nothing python does at startup shows up), fds
({fd: /proc/self/fd link}) and, for each socket fd, its local and peer
address and whether it is in non-blocking mode (O_NONBLOCK).
"""
import json
import os
import socket
import sys


def open_fds():
    # The directory listing uses an fd of its own; it is closed again by the
    # time we ask, so keep only the fds that are still open afterwards.
    names = os.listdir("/proc/self/fd")
    out = {}
    for n in names:
        fd = int(n)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        out[fd] = target
    return out


def sock_info(fd):
    nonblocking = not os.get_blocking(fd)  # before python touches the socket
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError as e:
        return {"error": str(e)}
    try:
        return {"family": s.family.name, "local": list(s.getsockname()[:2]),
                "peer": list(s.getpeername()[:2]), "nonblocking": nonblocking}
    except OSError as e:
        return {"error": str(e)}
    finally:
        s.close()


def report(extra):
    with open("/proc/self/environ", "rb") as f:
        env = [e.decode(errors="replace") for e in f.read().split(b"\0") if e]
    fds = open_fds()
    socks = {}
    for fd, target in fds.items():
        if target.startswith("socket:"):
            socks[str(fd)] = sock_info(fd)
    r = {"argv": sys.argv[1:], "pid": os.getpid(), "ppid": os.getppid(), "env": env,
         "fds": {str(k): v for k, v in sorted(fds.items())}, "socks": socks}
    r.update(extra)
    return (json.dumps(r) + "\n").encode()


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "server"
    code = 0
    if "--exit" in sys.argv:
        code = int(sys.argv[sys.argv.index("--exit") + 1])
    if mode == "server":
        data = report({})
        write_all(1, data)
    else:
        data = report({})  # before touching the fds
        write_all(7, b"ping\n")
        try:
            socket.socket(fileno=os.dup(7)).shutdown(socket.SHUT_WR)
        except OSError:
            pass
        got = bytearray()
        while True:
            b = os.read(6, 65536)
            if not b:
                break
            got.extend(b)
        r = json.loads(data)
        r["received"] = got.decode(errors="replace")
        write_all(1, (json.dumps(r) + "\n").encode())
    sys.exit(code)


if __name__ == "__main__":
    main()
