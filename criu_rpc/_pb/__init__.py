"""Protobuf modules generated from proto/ by scripts/gen-proto (never edit).

``rpc_pb2`` holds CRIU's RPC messages (``criu_req``, ``criu_resp``,
``criu_opts``, ...), ``stats_pb2`` the stats image messages.
"""

from . import rpc_pb2, stats_pb2

__all__ = ["rpc_pb2", "stats_pb2"]
