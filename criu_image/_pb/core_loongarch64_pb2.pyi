from . import opts_pb2 as _opts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class user_loongarch64_gpregs_entry(_message.Message):
    __slots__ = ("regs", "pc")
    REGS_FIELD_NUMBER: _ClassVar[int]
    PC_FIELD_NUMBER: _ClassVar[int]
    regs: _containers.RepeatedScalarFieldContainer[int]
    pc: int
    def __init__(self, regs: _Optional[_Iterable[int]] = ..., pc: _Optional[int] = ...) -> None: ...

class user_loongarch64_fpregs_entry(_message.Message):
    __slots__ = ("regs", "fcc", "fcsr")
    REGS_FIELD_NUMBER: _ClassVar[int]
    FCC_FIELD_NUMBER: _ClassVar[int]
    FCSR_FIELD_NUMBER: _ClassVar[int]
    regs: _containers.RepeatedScalarFieldContainer[int]
    fcc: int
    fcsr: int
    def __init__(self, regs: _Optional[_Iterable[int]] = ..., fcc: _Optional[int] = ..., fcsr: _Optional[int] = ...) -> None: ...

class thread_info_loongarch64(_message.Message):
    __slots__ = ("clear_tid_addr", "tls", "gpregs", "fpregs")
    CLEAR_TID_ADDR_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    GPREGS_FIELD_NUMBER: _ClassVar[int]
    FPREGS_FIELD_NUMBER: _ClassVar[int]
    clear_tid_addr: int
    tls: int
    gpregs: user_loongarch64_gpregs_entry
    fpregs: user_loongarch64_fpregs_entry
    def __init__(self, clear_tid_addr: _Optional[int] = ..., tls: _Optional[int] = ..., gpregs: _Optional[_Union[user_loongarch64_gpregs_entry, _Mapping]] = ..., fpregs: _Optional[_Union[user_loongarch64_fpregs_entry, _Mapping]] = ...) -> None: ...
