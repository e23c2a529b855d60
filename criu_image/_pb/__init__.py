"""Protobuf modules generated from proto/images/ by scripts/gen-proto (never edit).

One module per CRIU image schema (``core_pb2``, ``pstree_pb2``, ...), with
the names CRIU gives its messages.  The stats image schema is
``criu_rpc._pb.stats_pb2`` (one schema file of that name per process).
"""
