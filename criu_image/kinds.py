"""Which protobuf message each image kind holds, and what follows its entries.

Keys are magic names (``magic.MAGICS``).  The facts are CRIU 4.2's
(criu/image-desc.c, criu/protobuf-desc.c and the code that writes each
image); the payload rules are those of the writers:

* ``PIPES_DATA``/``FIFO_DATA``: ``bytes`` of pipe content after each entry;
* ``SK_QUEUES``: ``length`` bytes of a socket's queued packet;
* ``TCP_STREAM``: the receive then the send queue (``inq_len + outq_len``);
* ``BPFMAP_DATA``: ``keys_bytes + values_bytes``;
* ``IPCNS_SHM``: the segment, padded to 4 bytes, unless ``in_pagemaps``
  (CRIU 4 always: then it is in ``pagemap-shmem-ID.img`` and nothing follows);
* ``IPCNS_SEM``: ``nsems`` u16 values, padded to 8 bytes;
* ``IPCNS_MSG``: ``qnum`` messages, each a size-prefixed ``ipc_msg`` then
  ``msize`` bytes padded to 8 (kept as one payload);
* ``PAGEMAP``: the first entry is a ``pagemap_head``, the rest ``pagemap_entry``;
* ``GHOST_FILE``: one ``ghost_file_entry``; with ``chunks`` then
  ``ghost_chunk_entry`` entries each followed by ``len`` bytes, else the rest
  of the file is the file's content.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from google.protobuf.message import Message

from criu_rpc._pb import stats_pb2

from ._pb import (apparmor_pb2, autofs_pb2, binfmt_misc_pb2, bpfmap_data_pb2, bpfmap_file_pb2, cgroup_pb2,
                  core_pb2, cpuinfo_pb2, creds_pb2, eventfd_pb2, eventpoll_pb2, ext_file_pb2, fdinfo_pb2,
                  fh_pb2, fifo_pb2, file_lock_pb2, fs_pb2, fsnotify_pb2, ghost_file_pb2, inventory_pb2, ipc_msg_pb2,
                  ipc_sem_pb2, ipc_shm_pb2, ipc_var_pb2, memfd_pb2, mm_pb2, mnt_pb2, netdev_pb2, ns_pb2,
                  packet_sock_pb2, pagemap_pb2, pidfd_pb2, pidns_pb2, pipe_data_pb2, pipe_pb2, pstree_pb2,
                  regfile_pb2, remap_file_path_pb2, rlimit_pb2, sa_pb2, seccomp_pb2, signalfd_pb2, sk_inet_pb2,
                  sk_netlink_pb2, sk_packet_pb2, sk_unix_pb2, tcp_stream_pb2, timens_pb2, timer_pb2,
                  timerfd_pb2, tty_pb2, tun_pb2, userns_pb2, utsns_pb2, vma_pb2, siginfo_pb2)

__all__ = ["MESSAGES", "HEAD_MESSAGES", "PAYLOAD_SIZE", "round_up"]


def round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


#: Magic name -> the message class of its entries.
MESSAGES: MappingProxyType[str, type[Message]] = MappingProxyType({
    "INVENTORY": inventory_pb2.inventory_entry,
    "PSTREE": pstree_pb2.pstree_entry,
    "CORE": core_pb2.core_entry,
    "IDS": core_pb2.task_kobj_ids_entry,
    "CREDS": creds_pb2.creds_entry,
    "UTSNS": utsns_pb2.utsns_entry,
    "TIMENS": timens_pb2.timens_entry,
    "PIDNS": pidns_pb2.pidns_entry,
    "IPC_VAR": ipc_var_pb2.ipc_var_entry,
    "IPCNS_SHM": ipc_shm_pb2.ipc_shm_entry,
    "IPCNS_SEM": ipc_sem_pb2.ipc_sem_entry,
    "IPCNS_MSG": ipc_msg_pb2.ipc_msg_entry,
    "FS": fs_pb2.fs_entry,
    "GHOST_FILE": ghost_file_pb2.ghost_file_entry,
    "MM": mm_pb2.mm_entry,
    "CGROUP": cgroup_pb2.cgroup_entry,
    "TCP_STREAM": tcp_stream_pb2.tcp_stream_entry,
    "STATS": stats_pb2.stats_entry,
    "PAGEMAP": pagemap_pb2.pagemap_entry,
    "REG_FILES": regfile_pb2.reg_file_entry,
    "NS_FILES": ns_pb2.ns_file_entry,
    "EVENTFD_FILE": eventfd_pb2.eventfd_file_entry,
    "EVENTPOLL_FILE": eventpoll_pb2.eventpoll_file_entry,
    "EVENTPOLL_TFD": eventpoll_pb2.eventpoll_tfd_entry,
    "SIGNALFD": signalfd_pb2.signalfd_entry,
    "TIMERFD": timerfd_pb2.timerfd_entry,
    "INOTIFY_FILE": fsnotify_pb2.inotify_file_entry,
    "INOTIFY_WD": fsnotify_pb2.inotify_wd_entry,
    "FANOTIFY_FILE": fsnotify_pb2.fanotify_file_entry,
    "FANOTIFY_MARK": fsnotify_pb2.fanotify_mark_entry,
    "VMAS": vma_pb2.vma_entry,
    "PIPES": pipe_pb2.pipe_entry,
    "FIFO": fifo_pb2.fifo_entry,
    "SIGACT": sa_pb2.sa_entry,
    "NETLINK_SK": sk_netlink_pb2.netlink_sk_entry,
    "REMAP_FPATH": remap_file_path_pb2.remap_file_path_entry,
    "MNTS": mnt_pb2.mnt_entry,
    "TTY_FILES": tty_pb2.tty_file_entry,
    "TTY_INFO": tty_pb2.tty_info_entry,
    "TTY_DATA": tty_pb2.tty_data_entry,
    "RLIMIT": rlimit_pb2.rlimit_entry,
    "TUNFILE": tun_pb2.tunfile_entry,
    "EXT_FILES": ext_file_pb2.ext_file_entry,
    "IRMAP_CACHE": fh_pb2.irmap_cache_entry,
    "FILE_LOCKS": file_lock_pb2.file_lock_entry,
    "FDINFO": fdinfo_pb2.fdinfo_entry,
    "UNIXSK": sk_unix_pb2.unix_sk_entry,
    "INETSK": sk_inet_pb2.inet_sk_entry,
    "PACKETSK": packet_sock_pb2.packet_sock_entry,
    "ITIMERS": timer_pb2.itimer_entry,
    "POSIX_TIMERS": timer_pb2.posix_timer_entry,
    "NETDEV": netdev_pb2.net_device_entry,
    "PIPES_DATA": pipe_data_pb2.pipe_data_entry,
    "FIFO_DATA": pipe_data_pb2.pipe_data_entry,
    "SK_QUEUES": sk_packet_pb2.sk_packet_entry,
    "NETNS": netdev_pb2.netns_entry,
    "USERNS": userns_pb2.userns_entry,
    "SECCOMP": seccomp_pb2.seccomp_entry,
    "AUTOFS": autofs_pb2.autofs_entry,
    "FILES": fdinfo_pb2.file_entry,
    "CPUINFO": cpuinfo_pb2.cpuinfo_entry,
    "MEMFD_INODE": memfd_pb2.memfd_inode_entry,
    "BPFMAP_FILE": bpfmap_file_pb2.bpfmap_file_entry,
    "BPFMAP_DATA": bpfmap_data_pb2.bpfmap_data_entry,
    "APPARMOR": apparmor_pb2.apparmor_entry,
    "BINFMT_MISC": binfmt_misc_pb2.binfmt_misc_entry,
    "SIGNAL": siginfo_pb2.signal_queue_entry,
    "PIDFD": pidfd_pb2.pidfd_entry,
})

#: The first entry of these kinds has its own message class.
HEAD_MESSAGES: MappingProxyType[str, type[Message]] = MappingProxyType({
    "PAGEMAP": pagemap_pb2.pagemap_head,
})

#: Magic name -> the size of the extra bytes after an entry, from the entry.
#: IPCNS_MSG and GHOST_FILE have their own layouts (see image.py).
PAYLOAD_SIZE: MappingProxyType[str, Callable[[Message], int]] = MappingProxyType({
    "PIPES_DATA": lambda m: m.bytes,
    "FIFO_DATA": lambda m: m.bytes,
    "SK_QUEUES": lambda m: m.length,
    "TCP_STREAM": lambda m: m.inq_len + m.outq_len,
    "BPFMAP_DATA": lambda m: m.keys_bytes + m.values_bytes,
    # CRIU 4 keeps the segment in pagemap-shmem-ID.img + pages (in_pagemaps).
    "IPCNS_SHM": lambda m: 0 if m.in_pagemaps else round_up(m.size, 4),
    "IPCNS_SEM": lambda m: round_up(2 * m.nsems, 8),
})
