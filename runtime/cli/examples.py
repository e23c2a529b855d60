"""Hand-written examples for the man pages, keyed by command (the only hand-written part of them).

Everything else in a page (synopsis, options, choices, defaults, exit
statuses) is generated from the parser and :mod:`runtime.cli.exitcodes` by
:mod:`runtime.cli.manpage`. Each example is ``(what it does, command line)``;
a command line starts with ``criu-cr`` and must parse with the real parser
(tests/unit/cli/test_manpages.py checks both, and that every command has
examples here). Nested commands are keyed ``"group sub"``.
"""

from __future__ import annotations

__all__ = ["EXAMPLES", "NOTES"]

Example = tuple[str, str]

EXAMPLES: dict[str, list[Example]] = {
    "": [
        ("What works on this machine, and why.", "criu-cr check"),
        ("Run a container from an OCI bundle whose network namespace was pre-created.",
         "criu-cr run -d --bundle /srv/web web"),
        ("Checkpoint it (it stops), then restore it: same IP, same connections.",
         "criu-cr checkpoint --tcp-established web"),
        ("", "criu-cr restore --tcp-established web"),
        ("Containers in another state root.", "criu-cr --root /run/other list"),
    ],
    "check": [
        ("Report CRIU, kernel features, network locking and privileges.", "criu-cr check"),
        ("The same as one JSON object, for scripts.", "criu-cr check --json"),
    ],
    "version": [("criu-cr's version and the CRIU it would run.", "criu-cr version")],
    "dump": [
        ("Dump a plain process tree (not a container), leaving it running.",
         "criu-cr dump --pid 1234 -D /tmp/tree --leave-running --shell-job"),
    ],
    "restore-tree": [("Restore that tree; prints its root pid.", "criu-cr restore-tree -D /tmp/tree --shell-job")],
    "run": [
        ("Create and start a container, return once it runs.", "criu-cr run -d --bundle /srv/web web"),
        ("Run in the foreground: its output follows, its exit status is returned, it is deleted after.",
         "criu-cr run --bundle /srv/job job1"),
    ],
    "create": [("Create a container whose process waits for start.", "criu-cr create --bundle /srv/web web")],
    "start": [("Start a created container.", "criu-cr start web")],
    "state": [("A container's state as JSON (status, pid, bundle, checkpoints).", "criu-cr state web")],
    "list": [
        ("All containers in the state root.", "criu-cr list"),
        ("As JSON.", "criu-cr list --json"),
    ],
    "ps": [("The host pids of a container's processes.", "criu-cr ps web")],
    "exec": [("Run a command inside a running container.", "criu-cr exec web -- cat /tmp/count")],
    "logs": [("What the container wrote to stdout and stderr.", "criu-cr logs web")],
    "pause": [("Freeze a running container.", "criu-cr pause web")],
    "resume": [("Thaw it.", "criu-cr resume web")],
    "kill": [
        ("Send SIGTERM to the container's init.", "criu-cr kill web"),
        ("Send SIGKILL.", "criu-cr kill web KILL"),
    ],
    "delete": [("Delete a container, killing it first if it runs.", "criu-cr delete -f web")],
    "adopt": [("Take over a container runc created (runc is not run).", "criu-cr adopt --runc-root /run/runc web")],
    "checkpoint": [
        ("Checkpoint a container with its established TCP connections; it stops.",
         "criu-cr checkpoint --tcp-established web"),
        ("A copy while it keeps running, into a directory of your choice.",
         "criu-cr checkpoint -R --image-path /tmp/ck web"),
        ("Also write one archive in podman's layout (zstd), to restore on another machine.",
         "criu-cr checkpoint -e /tmp/web.tar.zst web"),
        ("As an OCI image for Kubernetes/CRI-O.", "criu-cr checkpoint --create-image oci:/srv/ck:web-1 web"),
        ("Keep CRIU's log and statistics, and print the statistics.", "criu-cr checkpoint -k --print-stats web"),
    ],
    "restore": [
        ("Restore a checkpointed container from its last checkpoint.", "criu-cr restore --tcp-established web"),
        ("A checkpoint made elsewhere, as the new container web2.", "criu-cr restore --image-path /tmp/ck web2"),
        ("An archive, on another state root (or another machine).",
         "criu-cr --root /run/other restore --import /tmp/web.tar.zst"),
        ("An archive as a new container in another pre-created netns.",
         "criu-cr restore --import /tmp/web.tar.zst --name web2 --netns /run/netns/other"),
    ],
    "receive": [
        ("Accept one migration on port 7707, then exit with its status.",
         "criu-cr receive --listen 0.0.0.0:7707 --token-file /etc/criu-cr/token --once"),
    ],
    "migrate": [
        ("Move container web to the receiver at 192.0.2.7 (stop-and-copy).",
         "criu-cr migrate --token-file /etc/criu-cr/token --tcp-established web 192.0.2.7:7707"),
    ],
    "inspect": [
        ("What a checkpoint holds: processes, files, sockets, memory.", "criu-cr inspect web"),
        ("The same as JSON.", "criu-cr inspect --json web"),
        ("An archive, without unpacking it.", "criu-cr inspect /tmp/web.tar.zst"),
        ("Where a string sits in process 1's memory (pages hold secrets: mind who reads them).",
         "criu-cr inspect memory web --pid 1 --search PASSWORD"),
    ],
    "diff": [("What changed between two checkpoints of one container.", "criu-cr diff /tmp/ck1 /tmp/ck2")],
}

# A paragraph added to one command's EXIT STATUS section.
NOTES: dict[str, str] = {
    "exec": "On success, the exit status is the command's own, as runc and podman return it.",
    "run": "Without -d, the exit status is the container process's own, as runc and podman return it.",
}
