from . import opts_pb2 as _opts_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class tunfile_entry(_message.Message):
    __slots__ = ("id", "netdev", "detached", "ns_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NETDEV_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    NS_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    netdev: str
    detached: bool
    ns_id: int
    def __init__(self, id: _Optional[int] = ..., netdev: _Optional[str] = ..., detached: bool = ..., ns_id: _Optional[int] = ...) -> None: ...

class tun_link_entry(_message.Message):
    __slots__ = ("flags", "owner", "group", "vnethdr", "sndbuf")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    VNETHDR_FIELD_NUMBER: _ClassVar[int]
    SNDBUF_FIELD_NUMBER: _ClassVar[int]
    flags: int
    owner: int
    group: int
    vnethdr: int
    sndbuf: int
    def __init__(self, flags: _Optional[int] = ..., owner: _Optional[int] = ..., group: _Optional[int] = ..., vnethdr: _Optional[int] = ..., sndbuf: _Optional[int] = ...) -> None: ...
