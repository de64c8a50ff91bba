#!/usr/bin/env python3
"""The raw-TCP ceiling for bench/run.sh's push rows: one TCP stream on loopback.

    tcp_stream.py FILE [CHUNK]

Forks a receiver (listens on 127.0.0.1, an ephemeral port; reads into a buffer and drops
the bytes), then the parent reads FILE in CHUNK-byte pieces (default 256 KiB, muster's
chunk size) and sends them. Read + send, no sendfile: the same work a userspace sender
does. Exits 0 when the receiver got exactly the file's size, and prints the byte count.
"""
import os
import socket
import sys


def main() -> int:
    path = sys.argv[1]
    chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 256 * 1024
    size = os.path.getsize(path)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        c, _ = ls.accept()
        buf = bytearray(chunk)
        got = 0
        while True:
            k = c.recv_into(buf)
            if not k:
                break
            got += k
        os._exit(0 if got == size else 1)
    ls.close()
    s = socket.create_connection(("127.0.0.1", port))
    sent = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while True:
            k = f.readinto(buf)
            if not k:
                break
            s.sendall(view[:k])
            sent += k
    s.shutdown(socket.SHUT_WR)
    s.close()
    _, st = os.waitpid(pid, 0)
    ok = os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0 and sent == size
    print(f"{sent} bytes {'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
