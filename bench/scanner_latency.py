#!/usr/bin/env python3
"""scanner_latency.py - the scanners' own time for the benchmark's message,
asked directly (no proxy): clamd INSTREAM or spamd SYMBOLS, one request at
a time, N times. The floor for what scanning can add to a message.

usage: scanner_latency.py clamd|spamd PORT N SIZE
prints: N, p50_ms, p90_ms, p99_ms, mean_ms (tab-separated)
"""
import socket
import statistics
import struct
import sys
import time


def message(i, size):
    body_line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    return (b"Received: from latency.bench.example (unknown [127.0.0.1])\r\n\tby gw (greygate) with ESMTP id X\r\n"
            b"From: sender@client.bench.example\r\nTo: rcpt@bench.example\r\nSubject: latency %d\r\n"
            b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@client.bench.example>\r\n\r\n" % (i, i)
            + body_line * max(1, size // len(body_line)))


def read_all(s):
    out = b""
    while True:
        c = s.recv(65536)
        if not c:
            return out
        out += c


def clamd(port, data):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"zINSTREAM\0" + struct.pack(">I", len(data)) + data + struct.pack(">I", 0))
    r = b""
    while not r.endswith(b"\0"):
        c = s.recv(512)
        if not c:
            break
        r += c
    s.close()
    assert r.startswith(b"stream: OK"), r


def spamd(port, data):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(data) + data)
    r = read_all(s)
    s.close()
    assert b" 0 EX_OK" in r, r


def main():
    kind, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ask = clamd if kind == "clamd" else spamd
    times = []
    for i in range(n):
        data = message(i, size)
        start = time.perf_counter()
        ask(port, data)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
    print(f"{n}\t{q(0.5):.2f}\t{q(0.9):.2f}\t{q(0.99):.2f}\t{statistics.mean(times):.2f}")


main()
