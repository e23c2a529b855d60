"""A stand-in for ``criu swrk <fd>`` (and one ``criu service`` connection)
that replays a scripted conversation with stored CRIU replies.

The script is a JSON list read from ``$FAKE_CRIU_SCENARIO``; every request
received (and every fd probe) is appended to ``$FAKE_CRIU_JOURNAL`` as one
JSON line.  Steps:

* ``{"recv": "DUMP"}`` -- receive one request; it must have that type
* ``{"send": "dump"}`` -- send the stored reply ``data/criu_replies/dump.bin``
* ``{"send_msg": {...}}`` -- send a ``criu_resp`` given as a JSON dict
* ``{"send_fd": "notify_orphan-pts-master", "text": "..."}`` -- send a
  message with a pipe's read end attached, ``text`` written into the pipe
* ``{"probe_fds": [3, 7]}`` -- journal which of these fds are open here
* ``{"spawn": 2}`` -- fork that many children, each with a child of its own,
  all holding our socket and sleeping (as the tasks CRIU forks on restore);
  each journals ``{"spawned": pid, "ppid": ppid}``
* ``{"announce": "post-restore"}`` -- send that notify naming the first
  spawned child as the restored root
* ``{"exit": 3}`` / ``{"kill": true}`` / ``{"hang": true}``

After the last step the fake waits for EOF and exits 0.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from google.protobuf import json_format  # noqa: E402

from criu_rpc._pb import rpc_pb2  # noqa: E402

REPLIES = Path(__file__).resolve().parents[1] / "data" / "criu_replies"


def reply_bytes(name: str) -> bytes:
    return (REPLIES / f"{name}.bin").read_bytes()


def journal(entry: dict) -> None:
    with open(os.environ["FAKE_CRIU_JOURNAL"], "a") as f:
        f.write(json.dumps(entry) + "\n")


def _sleeper(ready_w: int) -> None:
    journal({"spawned": os.getpid(), "ppid": os.getppid()})
    os.write(ready_w, b"x")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
    os._exit(0)


def spawn(n: int) -> list[int]:
    r, w = os.pipe()
    children = []
    for _ in range(n):
        child = os.fork()
        if child == 0:
            if os.fork() == 0:
                _sleeper(w)
            _sleeper(w)
        children.append(child)
    os.close(w)
    got = 0
    while got < 2 * n:
        got += len(os.read(r, 64))
    os.close(r)
    return children


def run(sock: socket.socket, steps: list[dict]) -> int:
    children: list[int] = []
    for step in steps:
        if "recv" in step:
            data = sock.recv(1 << 20)
            if not data:
                journal({"eof_before": step["recv"]})
                return 1
            req = rpc_pb2.criu_req.FromString(data)
            journal({"request": json_format.MessageToDict(req, preserving_proto_field_name=True)})
            if rpc_pb2.criu_req_type.Name(req.type) != step["recv"]:
                return 2
        elif "send" in step:
            sock.send(reply_bytes(step["send"]))
        elif "send_msg" in step:
            sock.send(json_format.ParseDict(step["send_msg"], rpc_pb2.criu_resp()).SerializeToString())
        elif "send_fd" in step:
            r, w = os.pipe()
            os.write(w, step.get("text", "").encode())
            os.close(w)
            sock.sendmsg([reply_bytes(step["send_fd"])],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]).tobytes())])
            os.close(r)
        elif "probe_fds" in step:
            found = {}
            for fd in step["probe_fds"]:
                try:
                    os.fstat(fd)
                    found[str(fd)] = True
                except OSError:
                    found[str(fd)] = False
            journal({"fds": found})
        elif "spawn" in step:
            children += spawn(step["spawn"])
        elif "announce" in step:
            notify = {"type": "NOTIFY", "success": True, "notify": {"script": step["announce"], "pid": children[0]}}
            sock.send(json_format.ParseDict(notify, rpc_pb2.criu_resp()).SerializeToString())
        elif "exit" in step:
            return step["exit"]
        elif "kill" in step:
            os.kill(os.getpid(), signal.SIGKILL)
        elif "hang" in step:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(60)
    while sock.recv(1 << 20):
        pass
    return 0


def main(argv: list[str]) -> int:
    steps = json.loads(Path(os.environ["FAKE_CRIU_SCENARIO"]).read_text())
    if argv[1:2] != ["swrk"]:
        print(f"fake criu: unsupported {argv[1:]}", file=sys.stderr)
        return 64
    journal({"argv": argv[1:], "ppid": os.getppid()})
    sock = socket.socket(fileno=int(argv[2]))
    return run(sock, steps)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
