from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class pipe_data_entry(_message.Message):
    __slots__ = ("pipe_id", "bytes", "size")
    PIPE_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    pipe_id: int
    bytes: int
    size: int
    def __init__(self, pipe_id: _Optional[int] = ..., bytes: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...
