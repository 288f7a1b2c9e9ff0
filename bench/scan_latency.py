#!/usr/bin/env python3
"""scan_latency.py - per-message latency through an SMTP proxy: one session,
N messages sent one after the other; for each, the time from sending the
message data (with the final dot) to the 250 reply.

usage: scan_latency.py HOST PORT N SIZE
prints: messages, p50_ms, p90_ms, p99_ms, mean_ms (tab-separated)
"""
import socket
import statistics
import sys
import time


def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


def main():
    host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    body_line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = body_line * max(1, size // len(body_line))
    s = socket.create_connection((host, port))
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO latency.bench.example\r\n")
    reply(f)
    times = []
    for i in range(n):
        s.sendall(b"MAIL FROM:<sender@client.bench.example>\r\nRCPT TO:<rcpt@bench.example>\r\nDATA\r\n")
        for _ in range(3):
            r = reply(f)
        if not r.startswith(b"354"):
            raise RuntimeError(f"DATA: {r!r}")
        data = (b"From: sender@client.bench.example\r\nTo: rcpt@bench.example\r\nSubject: latency %d\r\n"
                b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@client.bench.example>\r\n\r\n" % (i, i)
                + body + b".\r\n")
        start = time.perf_counter()
        s.sendall(data)
        r = reply(f)
        times.append((time.perf_counter() - start) * 1000)
        if not r.startswith(b"250"):
            raise RuntimeError(f"end of data: {r!r}")
    s.sendall(b"QUIT\r\n")
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
    print(f"{n}\t{q(0.5):.2f}\t{q(0.9):.2f}\t{q(0.99):.2f}\t{statistics.mean(times):.2f}")


main()
