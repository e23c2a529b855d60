"""Small network helpers for tests: wait for a TCP service, fetch over HTTP."""

from __future__ import annotations

import socket
import time

__all__ = ["wait_tcp", "http_get"]


def wait_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once ``host:port`` accepts a TCP connection. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not accept a connection within {timeout} s (last: {last})")


def http_get(host: str, port: int = 80, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET; returns (status code, body). Raises OSError, ValueError."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ValueError(f"not an HTTP response from {host}:{port}: {head[:80]!r}")
    return int(status_line[1]), body
