from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class pidns_entry(_message.Message):
    __slots__ = ("ext_key",)
    EXT_KEY_FIELD_NUMBER: _ClassVar[int]
    ext_key: str
    def __init__(self, ext_key: _Optional[str] = ...) -> None: ...
