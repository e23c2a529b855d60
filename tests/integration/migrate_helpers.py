"""A proxy that cuts a migration's channel after K bytes, for the loopback and the lab failure tests."""

from __future__ import annotations

import socket
import threading


def serve_cutting(lsn: socket.socket, target: tuple[str, int], limit: int) -> int:
    """Accept one connection on ``lsn``, forward it to ``target``; after ``limit`` bytes from the
    client cut both ways. Returns the bytes forwarded from the client."""
    client, _ = lsn.accept()
    server = socket.create_connection(target)
    sent = [0]

    def pipe(src: socket.socket, dst: socket.socket, cap: int | None) -> None:
        try:
            while data := src.recv(65536):
                if cap is not None:
                    data = data[:max(0, cap - sent[0])]
                    sent[0] += len(data)
                dst.sendall(data)
                if cap is not None and sent[0] >= cap:
                    return
        except OSError:
            return

    back = threading.Thread(target=pipe, args=(server, client, None), daemon=True)
    back.start()
    pipe(client, server, limit)
    for s in (client, server):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    back.join(10)
    client.close()
    server.close()
    return sent[0]


def cutting_proxy(port: int, target: tuple[str, int], limit: int) -> int:
    """:func:`serve_cutting` on ``port`` of every address (run on a lab host)."""
    with socket.create_server(("0.0.0.0", port)) as lsn:
        return serve_cutting(lsn, target, limit)
