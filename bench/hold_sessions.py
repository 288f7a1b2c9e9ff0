#!/usr/bin/env python3
"""hold_sessions.py - hold N idle SMTP sessions open on a proxy and report
the server's memory per idle session.

Each session reads the banner, sends EHLO and reads the reply, then idles.
The server's resident memory (VmRSS of PID) is read before the first
connection and once all N sessions are established; when all are up, every
session sends NOOP and must get 250 (the server is still serving all of
them), then QUIT.

usage: hold_sessions.py HOST PORT PID [N=5000]
Connections go to HOST:PORT only (use 127.0.0.1); stops by itself.
"""
import asyncio
import resource
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def read_reply(reader):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if len(line) < 4 or line[3:4] != b"-":
            return line


async def open_session(host, port, i):
    reader, writer = await asyncio.open_connection(host, port)
    banner = await read_reply(reader)
    if not banner.startswith(b"220"):
        raise ConnectionError(f"session {i}: banner {banner!r}")
    writer.write(b"EHLO hold.bench.example\r\n")
    await writer.drain()
    reply = await read_reply(reader)
    if not reply.startswith(b"250"):
        raise ConnectionError(f"session {i}: EHLO {reply!r}")
    return reader, writer


async def noop(reader, writer):
    writer.write(b"NOOP\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(read_reply(reader), 30)
    return reply.startswith(b"250")


async def main():
    host, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 5000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 256)), hard))
    before = rss_kib(pid)
    start = time.monotonic()
    sessions = []
    failures = 0
    # Open in batches so the accept queue is not the thing measured.
    for first in range(0, n, 200):
        batch = [open_session(host, port, i) for i in range(first, min(n, first + 200))]
        for result in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(result, BaseException):
                failures += 1
                if failures <= 5:
                    print(f"open failed: {result}", file=sys.stderr)
            else:
                sessions.append(result)
    opened = time.monotonic() - start
    await asyncio.sleep(2)
    after = rss_kib(pid)
    alive = sum(await asyncio.gather(*(noop(r, w) for r, w in sessions), return_exceptions=False))
    for _r, w in sessions:
        w.write(b"QUIT\r\n")
        w.close()
    per = (after - before) / max(1, len(sessions))
    print(f"sessions requested\t{n}")
    print(f"sessions established\t{len(sessions)}")
    print(f"open failures\t{failures}")
    print(f"seconds to open all\t{opened:.1f}")
    print(f"answered NOOP with all open\t{alive}")
    print(f"server RSS before KiB\t{before}")
    print(f"server RSS with all open KiB\t{after}")
    print(f"KiB per idle session\t{per:.1f}")
    return 0 if len(sessions) == n and alive == n else 1


sys.exit(asyncio.run(main()))
