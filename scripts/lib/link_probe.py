#!/usr/bin/env python3
"""Measures one emulated link the way Recur uses it: whole messages of M bytes over one TCP
connection that stays open, each answered by a one-byte acknowledgement.

    link_probe.py serve HOST PORT                  # receiver; exits after one client
    link_probe.py send HOST PORT BYTES REPEATS     # sender; prints one JSON line

The sender first times 20 one-byte round trips (the link's latency floor), then sends BYTES
REPEATS times with a 50 ms pause between (like the compute phase between two messages) and
reports the median transfer time and the rate it gives. Standard library only: it runs inside
the benchmark's network namespaces with the system python.
"""
import json
import socket
import statistics
import sys
import time

PING = b"p"
ACK = b"a"


def receive_exactly(connection, count, buffer):
    view = memoryview(buffer)
    received = 0
    while received < count:
        got = connection.recv_into(view[: min(len(buffer), count - received)])
        if not got:
            raise ConnectionError(f"peer closed after {received} of {count} bytes")
        received += got


def serve(host, port):
    listener = socket.create_server((host, port))
    listener.settimeout(30)
    connection, _ = listener.accept()
    connection.settimeout(30)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray(1 << 20)
    while True:
        header = connection.recv(9)
        if not header:
            return
        while len(header) < 9:
            header += connection.recv(9 - len(header))
        size = int.from_bytes(header[1:], "little")
        receive_exactly(connection, size, buffer)
        connection.sendall(ACK)


def send(host, port, size, repeats):
    deadline = time.monotonic() + 10
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = bytes(size)

    def exchange(body):
        started = time.perf_counter()
        connection.sendall(PING + len(body).to_bytes(8, "little") + body)
        if connection.recv(1) != ACK:
            raise ConnectionError("no acknowledgement")
        return time.perf_counter() - started

    round_trips = [exchange(b"") for _ in range(20)]
    transfers = []
    for _ in range(repeats):
        time.sleep(0.05)
        transfers.append(exchange(payload))
    connection.close()
    seconds = statistics.median(transfers)
    print(json.dumps({
        "bytes": size,
        "rtt_ms": 1e3 * statistics.median(round_trips),
        "transfer_ms": 1e3 * seconds,
        "gbit_per_s": size * 8 / seconds / 1e9,
    }))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 4:
        serve(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["send"] and len(sys.argv) == 6:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
