from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ipc_var_entry(_message.Message):
    __slots__ = ("sem_ctls", "msg_ctlmax", "msg_ctlmnb", "msg_ctlmni", "auto_msgmni", "shm_ctlmax", "shm_ctlall", "shm_ctlmni", "shm_rmid_forced", "mq_queues_max", "mq_msg_max", "mq_msgsize_max", "mq_msg_default", "mq_msgsize_default", "msg_next_id", "sem_next_id", "shm_next_id")
    SEM_CTLS_FIELD_NUMBER: _ClassVar[int]
    MSG_CTLMAX_FIELD_NUMBER: _ClassVar[int]
    MSG_CTLMNB_FIELD_NUMBER: _ClassVar[int]
    MSG_CTLMNI_FIELD_NUMBER: _ClassVar[int]
    AUTO_MSGMNI_FIELD_NUMBER: _ClassVar[int]
    SHM_CTLMAX_FIELD_NUMBER: _ClassVar[int]
    SHM_CTLALL_FIELD_NUMBER: _ClassVar[int]
    SHM_CTLMNI_FIELD_NUMBER: _ClassVar[int]
    SHM_RMID_FORCED_FIELD_NUMBER: _ClassVar[int]
    MQ_QUEUES_MAX_FIELD_NUMBER: _ClassVar[int]
    MQ_MSG_MAX_FIELD_NUMBER: _ClassVar[int]
    MQ_MSGSIZE_MAX_FIELD_NUMBER: _ClassVar[int]
    MQ_MSG_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MQ_MSGSIZE_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MSG_NEXT_ID_FIELD_NUMBER: _ClassVar[int]
    SEM_NEXT_ID_FIELD_NUMBER: _ClassVar[int]
    SHM_NEXT_ID_FIELD_NUMBER: _ClassVar[int]
    sem_ctls: _containers.RepeatedScalarFieldContainer[int]
    msg_ctlmax: int
    msg_ctlmnb: int
    msg_ctlmni: int
    auto_msgmni: int
    shm_ctlmax: int
    shm_ctlall: int
    shm_ctlmni: int
    shm_rmid_forced: int
    mq_queues_max: int
    mq_msg_max: int
    mq_msgsize_max: int
    mq_msg_default: int
    mq_msgsize_default: int
    msg_next_id: int
    sem_next_id: int
    shm_next_id: int
    def __init__(self, sem_ctls: _Optional[_Iterable[int]] = ..., msg_ctlmax: _Optional[int] = ..., msg_ctlmnb: _Optional[int] = ..., msg_ctlmni: _Optional[int] = ..., auto_msgmni: _Optional[int] = ..., shm_ctlmax: _Optional[int] = ..., shm_ctlall: _Optional[int] = ..., shm_ctlmni: _Optional[int] = ..., shm_rmid_forced: _Optional[int] = ..., mq_queues_max: _Optional[int] = ..., mq_msg_max: _Optional[int] = ..., mq_msgsize_max: _Optional[int] = ..., mq_msg_default: _Optional[int] = ..., mq_msgsize_default: _Optional[int] = ..., msg_next_id: _Optional[int] = ..., sem_next_id: _Optional[int] = ..., shm_next_id: _Optional[int] = ...) -> None: ...
