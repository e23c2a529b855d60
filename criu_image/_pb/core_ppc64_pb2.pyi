from . import opts_pb2 as _opts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class user_ppc64_regs_entry(_message.Message):
    __slots__ = ("gpr", "nip", "msr", "orig_gpr3", "ctr", "link", "xer", "ccr", "trap", "texasr", "tfhar", "tfiar")
    GPR_FIELD_NUMBER: _ClassVar[int]
    NIP_FIELD_NUMBER: _ClassVar[int]
    MSR_FIELD_NUMBER: _ClassVar[int]
    ORIG_GPR3_FIELD_NUMBER: _ClassVar[int]
    CTR_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    XER_FIELD_NUMBER: _ClassVar[int]
    CCR_FIELD_NUMBER: _ClassVar[int]
    TRAP_FIELD_NUMBER: _ClassVar[int]
    TEXASR_FIELD_NUMBER: _ClassVar[int]
    TFHAR_FIELD_NUMBER: _ClassVar[int]
    TFIAR_FIELD_NUMBER: _ClassVar[int]
    gpr: _containers.RepeatedScalarFieldContainer[int]
    nip: int
    msr: int
    orig_gpr3: int
    ctr: int
    link: int
    xer: int
    ccr: int
    trap: int
    texasr: int
    tfhar: int
    tfiar: int
    def __init__(self, gpr: _Optional[_Iterable[int]] = ..., nip: _Optional[int] = ..., msr: _Optional[int] = ..., orig_gpr3: _Optional[int] = ..., ctr: _Optional[int] = ..., link: _Optional[int] = ..., xer: _Optional[int] = ..., ccr: _Optional[int] = ..., trap: _Optional[int] = ..., texasr: _Optional[int] = ..., tfhar: _Optional[int] = ..., tfiar: _Optional[int] = ...) -> None: ...

class user_ppc64_fpstate_entry(_message.Message):
    __slots__ = ("fpregs",)
    FPREGS_FIELD_NUMBER: _ClassVar[int]
    fpregs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, fpregs: _Optional[_Iterable[int]] = ...) -> None: ...

class user_ppc64_vrstate_entry(_message.Message):
    __slots__ = ("vrregs", "vrsave")
    VRREGS_FIELD_NUMBER: _ClassVar[int]
    VRSAVE_FIELD_NUMBER: _ClassVar[int]
    vrregs: _containers.RepeatedScalarFieldContainer[int]
    vrsave: int
    def __init__(self, vrregs: _Optional[_Iterable[int]] = ..., vrsave: _Optional[int] = ...) -> None: ...

class user_ppc64_vsxstate_entry(_message.Message):
    __slots__ = ("vsxregs",)
    VSXREGS_FIELD_NUMBER: _ClassVar[int]
    vsxregs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, vsxregs: _Optional[_Iterable[int]] = ...) -> None: ...

class user_ppc64_tm_regs_entry(_message.Message):
    __slots__ = ("gpregs", "fpstate", "vrstate", "vsxstate")
    GPREGS_FIELD_NUMBER: _ClassVar[int]
    FPSTATE_FIELD_NUMBER: _ClassVar[int]
    VRSTATE_FIELD_NUMBER: _ClassVar[int]
    VSXSTATE_FIELD_NUMBER: _ClassVar[int]
    gpregs: user_ppc64_regs_entry
    fpstate: user_ppc64_fpstate_entry
    vrstate: user_ppc64_vrstate_entry
    vsxstate: user_ppc64_vsxstate_entry
    def __init__(self, gpregs: _Optional[_Union[user_ppc64_regs_entry, _Mapping]] = ..., fpstate: _Optional[_Union[user_ppc64_fpstate_entry, _Mapping]] = ..., vrstate: _Optional[_Union[user_ppc64_vrstate_entry, _Mapping]] = ..., vsxstate: _Optional[_Union[user_ppc64_vsxstate_entry, _Mapping]] = ...) -> None: ...

class thread_info_ppc64(_message.Message):
    __slots__ = ("clear_tid_addr", "gpregs", "fpstate", "vrstate", "vsxstate", "tmstate")
    CLEAR_TID_ADDR_FIELD_NUMBER: _ClassVar[int]
    GPREGS_FIELD_NUMBER: _ClassVar[int]
    FPSTATE_FIELD_NUMBER: _ClassVar[int]
    VRSTATE_FIELD_NUMBER: _ClassVar[int]
    VSXSTATE_FIELD_NUMBER: _ClassVar[int]
    TMSTATE_FIELD_NUMBER: _ClassVar[int]
    clear_tid_addr: int
    gpregs: user_ppc64_regs_entry
    fpstate: user_ppc64_fpstate_entry
    vrstate: user_ppc64_vrstate_entry
    vsxstate: user_ppc64_vsxstate_entry
    tmstate: user_ppc64_tm_regs_entry
    def __init__(self, clear_tid_addr: _Optional[int] = ..., gpregs: _Optional[_Union[user_ppc64_regs_entry, _Mapping]] = ..., fpstate: _Optional[_Union[user_ppc64_fpstate_entry, _Mapping]] = ..., vrstate: _Optional[_Union[user_ppc64_vrstate_entry, _Mapping]] = ..., vsxstate: _Optional[_Union[user_ppc64_vsxstate_entry, _Mapping]] = ..., tmstate: _Optional[_Union[user_ppc64_tm_regs_entry, _Mapping]] = ...) -> None: ...
