from . import macvlan_pb2 as _macvlan_pb2
from . import opts_pb2 as _opts_pb2
from . import tun_pb2 as _tun_pb2
from . import sysctl_pb2 as _sysctl_pb2
from . import sit_pb2 as _sit_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class nd_type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOOPBACK: _ClassVar[nd_type]
    VETH: _ClassVar[nd_type]
    TUN: _ClassVar[nd_type]
    EXTLINK: _ClassVar[nd_type]
    VENET: _ClassVar[nd_type]
    BRIDGE: _ClassVar[nd_type]
    MACVLAN: _ClassVar[nd_type]
    SIT: _ClassVar[nd_type]
LOOPBACK: nd_type
VETH: nd_type
TUN: nd_type
EXTLINK: nd_type
VENET: nd_type
BRIDGE: nd_type
MACVLAN: nd_type
SIT: nd_type

class net_device_entry(_message.Message):
    __slots__ = ("type", "ifindex", "mtu", "flags", "name", "tun", "address", "conf", "conf4", "conf6", "macvlan", "peer_ifindex", "peer_nsid", "master", "sit")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TUN_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONF_FIELD_NUMBER: _ClassVar[int]
    CONF4_FIELD_NUMBER: _ClassVar[int]
    CONF6_FIELD_NUMBER: _ClassVar[int]
    MACVLAN_FIELD_NUMBER: _ClassVar[int]
    PEER_IFINDEX_FIELD_NUMBER: _ClassVar[int]
    PEER_NSID_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    SIT_FIELD_NUMBER: _ClassVar[int]
    type: nd_type
    ifindex: int
    mtu: int
    flags: int
    name: str
    tun: _tun_pb2.tun_link_entry
    address: bytes
    conf: _containers.RepeatedScalarFieldContainer[int]
    conf4: _containers.RepeatedCompositeFieldContainer[_sysctl_pb2.sysctl_entry]
    conf6: _containers.RepeatedCompositeFieldContainer[_sysctl_pb2.sysctl_entry]
    macvlan: _macvlan_pb2.macvlan_link_entry
    peer_ifindex: int
    peer_nsid: int
    master: int
    sit: _sit_pb2.sit_entry
    def __init__(self, type: _Optional[_Union[nd_type, str]] = ..., ifindex: _Optional[int] = ..., mtu: _Optional[int] = ..., flags: _Optional[int] = ..., name: _Optional[str] = ..., tun: _Optional[_Union[_tun_pb2.tun_link_entry, _Mapping]] = ..., address: _Optional[bytes] = ..., conf: _Optional[_Iterable[int]] = ..., conf4: _Optional[_Iterable[_Union[_sysctl_pb2.sysctl_entry, _Mapping]]] = ..., conf6: _Optional[_Iterable[_Union[_sysctl_pb2.sysctl_entry, _Mapping]]] = ..., macvlan: _Optional[_Union[_macvlan_pb2.macvlan_link_entry, _Mapping]] = ..., peer_ifindex: _Optional[int] = ..., peer_nsid: _Optional[int] = ..., master: _Optional[int] = ..., sit: _Optional[_Union[_sit_pb2.sit_entry, _Mapping]] = ...) -> None: ...

class netns_id(_message.Message):
    __slots__ = ("target_ns_id", "netnsid_value")
    TARGET_NS_ID_FIELD_NUMBER: _ClassVar[int]
    NETNSID_VALUE_FIELD_NUMBER: _ClassVar[int]
    target_ns_id: int
    netnsid_value: int
    def __init__(self, target_ns_id: _Optional[int] = ..., netnsid_value: _Optional[int] = ...) -> None: ...

class netns_entry(_message.Message):
    __slots__ = ("def_conf", "all_conf", "def_conf4", "all_conf4", "def_conf6", "all_conf6", "nsids", "ext_key", "unix_conf", "ipv4_sysctl")
    DEF_CONF_FIELD_NUMBER: _ClassVar[int]
    ALL_CONF_FIELD_NUMBER: _ClassVar[int]
    DEF_CONF4_FIELD_NUMBER: _ClassVar[int]
    ALL_CONF4_FIELD_NUMBER: _ClassVar[int]
    DEF_CONF6_FIELD_NUMBER: _ClassVar[int]
    ALL_CONF6_FIELD_NUMBER: _ClassVar[int]
    NSIDS_FIELD_NUMBER: _ClassVar[int]
    EXT_KEY_FIELD_NUMBER: _ClassVar[int]
    UNIX_CONF_FIELD_NUMBER: _ClassVar[int]
    IPV4_SYSCTL_FIELD_NUMBER: _ClassVar[int]
    def_conf: _containers.RepeatedScalarFieldContainer[int]
    all_conf: _containers.RepeatedScalarFieldContainer[int]
    def_conf4: _containers.RepeatedCompositeFieldContainer[_sysctl_pb2.sysctl_entry]
    all_conf4: _containers.RepeatedCompositeFieldContainer[_sysctl_pb2.sysctl_entry]
    def_conf6: _containers.RepeatedCompositeFieldContainer[_sysctl_pb2.sysctl_entry]
    all_conf6: _containers.RepeatedCompositeFieldContainer[_sysctl_pb2.sysctl_entry]
    nsids: _containers.RepeatedCompositeFieldContainer[netns_id]
    ext_key: str
    unix_conf: _containers.RepeatedCompositeFieldContainer[_sysctl_pb2.sysctl_entry]
    ipv4_sysctl: _containers.RepeatedCompositeFieldContainer[_sysctl_pb2.sysctl_entry]
    def __init__(self, def_conf: _Optional[_Iterable[int]] = ..., all_conf: _Optional[_Iterable[int]] = ..., def_conf4: _Optional[_Iterable[_Union[_sysctl_pb2.sysctl_entry, _Mapping]]] = ..., all_conf4: _Optional[_Iterable[_Union[_sysctl_pb2.sysctl_entry, _Mapping]]] = ..., def_conf6: _Optional[_Iterable[_Union[_sysctl_pb2.sysctl_entry, _Mapping]]] = ..., all_conf6: _Optional[_Iterable[_Union[_sysctl_pb2.sysctl_entry, _Mapping]]] = ..., nsids: _Optional[_Iterable[_Union[netns_id, _Mapping]]] = ..., ext_key: _Optional[str] = ..., unix_conf: _Optional[_Iterable[_Union[_sysctl_pb2.sysctl_entry, _Mapping]]] = ..., ipv4_sysctl: _Optional[_Iterable[_Union[_sysctl_pb2.sysctl_entry, _Mapping]]] = ...) -> None: ...
