"""Releasing CRIU's network lock from a pre-created network namespace.

A checkpoint that stops the container leaves its (external) netns locked --
CRIU drops all traffic there so peers see silence rather than resets, and
the restore unlocks it. When a checkpointed container is deleted instead, no
restore will come: :func:`release` removes the lock so the user's netns
works again. Both of CRIU's methods end up as nftables objects here (the
``iptables`` method goes through iptables-nft): an ``inet CRIU-<run id>``
table, or a ``CRIU`` chain in ``ip``/``ip6 filter`` jumped to from INPUT and
OUTPUT. They are removed through libnftables (ctypes), inside the netns, from
a short-lived thread that alone enters it. (CRIU's restore tolerates a lock
that is already gone.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from typing import Any

from runtime.net.in_netns import in_netns

__all__ = ["release", "lock_commands", "criu_lock_objects", "LOCK_CHAIN", "LOCK_TABLE_PREFIX"]

LOCK_TABLE_PREFIX = "CRIU-"  # the nftables method's table: "inet CRIU-<run id>"
LOCK_CHAIN = "CRIU"  # the iptables method's chain
_OUTPUT_HANDLE = 1 << 3  # NFT_CTX_OUTPUT_HANDLE
_OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON


class _Nft:
    """A libnftables context; raises OSError when the library is missing or a command fails."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise OSError(f"libnftables not available ({exc}); install the nftables package") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise OSError("libnftables: cannot create a context")
        lib.nft_ctx_output_set_flags(self._ctx, _OUTPUT_JSON | _OUTPUT_HANDLE)
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def run(self, cmd: str) -> str:
        if self._lib.nft_run_cmd_from_buffer(self._ctx, cmd.encode()) != 0:
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace").strip()
            raise OSError(f"nft {cmd!r}: {err or 'failed'}")
        return (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()

    def close(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None


def criu_lock_objects(ruleset: dict[str, Any]) -> list[str]:
    """The nft commands that remove CRIU's lock from a JSON ruleset (``nft -j -a list ruleset``). Pure."""
    items = ruleset.get("nftables", [])
    cmds = []
    for item in items:  # rules jumping to CRIU's chain go first, then the chains, then tables
        rule = item.get("rule")
        if rule and rule.get("chain") != LOCK_CHAIN and any(
                (e.get("jump") or {}).get("target") == LOCK_CHAIN for e in rule.get("expr", [])):
            cmds.append(f"delete rule {rule['family']} {rule['table']} {rule['chain']} handle {rule['handle']}")
    for item in items:
        chain = item.get("chain")
        if chain and chain.get("name") == LOCK_CHAIN:
            cmds.append(f"flush chain {chain['family']} {chain['table']} {LOCK_CHAIN}")
            cmds.append(f"delete chain {chain['family']} {chain['table']} {LOCK_CHAIN}")
    for item in items:
        table = item.get("table")
        if table and str(table.get("name", "")).startswith(LOCK_TABLE_PREFIX):
            cmds.append(f"delete table {table['family']} {table['name']}")
    return cmds


def release(netns_path: str) -> list[str]:
    """Remove CRIU's network lock from the netns at ``netns_path``; return the commands run.

    Raises OSError (no such netns, libnftables missing, a command refused).
    """
    return _in_netns(netns_path, remove=True)


def lock_commands(netns_path: str) -> list[str]:
    """What :func:`release` would run there now ([] when the netns holds no lock of CRIU's)."""
    return _in_netns(netns_path, remove=False)


def _in_netns(netns_path: str, *, remove: bool) -> list[str]:
    def inside() -> list[str]:
        nft = _Nft()
        try:
            cmds = criu_lock_objects(json.loads(nft.run("list ruleset") or "{}"))
            if remove:
                for cmd in cmds:
                    nft.run(cmd)
            return cmds
        finally:
            nft.close()

    return in_netns(netns_path, inside)
