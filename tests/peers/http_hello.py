# SPDX-License-Identifier: MIT
"""A UCSPI HTTP/1.0 responder for the e2e tests (run by `pbx serve -- ...`).
It is a peer, not a test: the tests (test_peers.py) check what curl gets.

Reads the request head from fd 0 up to the blank line, then answers on fd 1
with 200 and the body "you are TCPREMOTEIP TCPREMOTEPORT, I am TCPLOCALIP
TCPLOCALPORT\\n" taken from the UCSPI environment.
"""
import os
import sys


def main():
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        b = os.read(0, 4096)
        if not b:
            break
        head += b
    if not head.startswith(b"GET "):
        sys.exit(1)
    e = os.environ
    body = (f"you are {e.get('TCPREMOTEIP')} {e.get('TCPREMOTEPORT')}, "
            f"I am {e.get('TCPLOCALIP')} {e.get('TCPLOCALPORT')}\n").encode()
    resp = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    while resp:
        n = os.write(1, resp)
        resp = resp[n:]


if __name__ == "__main__":
    main()
