from . import opts_pb2 as _opts_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class fstype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNSUPPORTED: _ClassVar[fstype]
    PROC: _ClassVar[fstype]
    SYSFS: _ClassVar[fstype]
    DEVTMPFS: _ClassVar[fstype]
    BINFMT_MISC: _ClassVar[fstype]
    TMPFS: _ClassVar[fstype]
    DEVPTS: _ClassVar[fstype]
    SIMFS: _ClassVar[fstype]
    PSTORE: _ClassVar[fstype]
    SECURITYFS: _ClassVar[fstype]
    FUSECTL: _ClassVar[fstype]
    DEBUGFS: _ClassVar[fstype]
    CGROUP: _ClassVar[fstype]
    AUFS: _ClassVar[fstype]
    MQUEUE: _ClassVar[fstype]
    FUSE: _ClassVar[fstype]
    AUTO: _ClassVar[fstype]
    OVERLAYFS: _ClassVar[fstype]
    AUTOFS: _ClassVar[fstype]
    TRACEFS: _ClassVar[fstype]
    CGROUP2: _ClassVar[fstype]
UNSUPPORTED: fstype
PROC: fstype
SYSFS: fstype
DEVTMPFS: fstype
BINFMT_MISC: fstype
TMPFS: fstype
DEVPTS: fstype
SIMFS: fstype
PSTORE: fstype
SECURITYFS: fstype
FUSECTL: fstype
DEBUGFS: fstype
CGROUP: fstype
AUFS: fstype
MQUEUE: fstype
FUSE: fstype
AUTO: fstype
OVERLAYFS: fstype
AUTOFS: fstype
TRACEFS: fstype
CGROUP2: fstype

class mnt_entry(_message.Message):
    __slots__ = ("fstype", "mnt_id", "root_dev", "parent_mnt_id", "flags", "root", "mountpoint", "source", "options", "shared_id", "master_id", "with_plugin", "ext_mount", "fsname", "internal_sharing", "deleted", "sb_flags", "ext_key")
    FSTYPE_FIELD_NUMBER: _ClassVar[int]
    MNT_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_DEV_FIELD_NUMBER: _ClassVar[int]
    PARENT_MNT_ID_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    MOUNTPOINT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SHARED_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_PLUGIN_FIELD_NUMBER: _ClassVar[int]
    EXT_MOUNT_FIELD_NUMBER: _ClassVar[int]
    FSNAME_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_SHARING_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SB_FLAGS_FIELD_NUMBER: _ClassVar[int]
    EXT_KEY_FIELD_NUMBER: _ClassVar[int]
    fstype: int
    mnt_id: int
    root_dev: int
    parent_mnt_id: int
    flags: int
    root: str
    mountpoint: str
    source: str
    options: str
    shared_id: int
    master_id: int
    with_plugin: bool
    ext_mount: bool
    fsname: str
    internal_sharing: bool
    deleted: bool
    sb_flags: int
    ext_key: str
    def __init__(self, fstype: _Optional[int] = ..., mnt_id: _Optional[int] = ..., root_dev: _Optional[int] = ..., parent_mnt_id: _Optional[int] = ..., flags: _Optional[int] = ..., root: _Optional[str] = ..., mountpoint: _Optional[str] = ..., source: _Optional[str] = ..., options: _Optional[str] = ..., shared_id: _Optional[int] = ..., master_id: _Optional[int] = ..., with_plugin: bool = ..., ext_mount: bool = ..., fsname: _Optional[str] = ..., internal_sharing: bool = ..., deleted: bool = ..., sb_flags: _Optional[int] = ..., ext_key: _Optional[str] = ...) -> None: ...
