"""Named network namespaces and veth pairs, through pyroute2 (never ``ip``).

This is the setup a container joins through ``linux.namespaces[].path``::

    create_netns("web")                                   # /run/netns/web
    pair = setup_veth(netns="web", host_ifname="vh-web", ns_ifname="eth0",
                      host_addr="10.231.1.1/24", ns_addr="10.231.1.2/24")
    ...
    teardown(pair)                                        # link and netns gone

The interface snapshot (``network.status``) and recreating a netns from it
are in :mod:`runtime.net.snapshot`. Everything here changes network state,
with pyroute2, imported on first use.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from runtime.errors import NetnsError

if TYPE_CHECKING:  # both imported where used: a checkpoint or restore whose netns is there needs neither
    import ipaddress

    from pyroute2 import IPRoute

__all__ = [
    "NETNS_DIR", "VethPair", "netns_path", "netns_exists", "create_netns", "delete_netns",
    "setup_veth", "add_addresses", "teardown",
]

NETNS_DIR = "/run/netns"  # where `ip netns add` and pyroute2 bind-mount named namespaces
_IFNAMSIZ = 15


@dataclass(frozen=True, slots=True, kw_only=True)
class VethPair:
    """A veth with one end in the caller's netns and the other in ``netns``."""

    netns: str
    host_ifname: str
    ns_ifname: str
    host_addr: str | None  # CIDR, e.g. "10.231.1.1/24"
    ns_addr: str | None
    host_mac: str = ""
    ns_mac: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VethPair:
        return cls(**data)


def netns_path(name_or_path: str) -> str:
    """``/run/netns/<name>`` for a name; a path (anything with a ``/``) is returned as is."""
    if "/" in name_or_path:
        return name_or_path
    if not name_or_path or name_or_path in (".", "..") or len(name_or_path) > 255 or "\0" in name_or_path:
        raise NetnsError(name_or_path[:64], "invalid network namespace name (1-255 characters, no '/')")
    return os.path.join(NETNS_DIR, name_or_path)


def netns_exists(name_or_path: str) -> bool:
    """Whether ``name_or_path`` is a mounted network namespace file (not a leftover empty file)."""
    try:
        st = os.stat(netns_path(name_or_path))
    except FileNotFoundError:
        return False
    return st.st_dev == os.stat("/proc/self/ns/net").st_dev


def create_netns(name: str, *, exist_ok: bool = False) -> str:
    """Create a named network namespace (like ``ip netns add``); return its path.

    Raises :class:`NetnsError` if it already exists (unless ``exist_ok``) or
    cannot be made. Its ``lo`` is brought up.
    """
    if "/" in name:
        raise NetnsError(name, "give a name, not a path")
    path = netns_path(name)
    if netns_exists(name):
        if exist_ok:
            return path
        raise NetnsError(name, f"{path} already exists; delete it first or pass exist_ok=True")
    if os.path.lexists(path):
        raise NetnsError(name, f"{path} exists but is not a network namespace (stale file?); remove it")
    try:
        _pyroute2_netns().create(name)  # in a forked child: unshare + bind mount, as `ip netns add`
    except (OSError, RuntimeError, TypeError) as exc:  # pyroute2 re-raises the child's error by class
        _remove_stale(path)  # the file did not exist before (checked above): it is ours
        raise NetnsError(name, f"cannot create {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if not netns_exists(name):
        _remove_stale(path)
        raise NetnsError(name, f"creating {path} failed (no namespace is mounted there)")
    with _ipr(name) as ns:
        _call(name, ns.link, "set", index=1, state="up")
    return path


def delete_netns(name: str, *, missing_ok: bool = True) -> None:
    """Unmount and remove ``/run/netns/<name>``.

    Processes still inside keep the namespace alive; only the name goes away.
    Raises :class:`NetnsError` if it is missing (unless ``missing_ok``) or busy.
    """
    path = netns_path(name)
    if not os.path.lexists(path):
        if missing_ok:
            return
        raise NetnsError(name, f"{path} does not exist")
    try:
        _pyroute2_netns().remove(name)
    except FileNotFoundError:
        if not missing_ok:
            raise NetnsError(name, f"{path} does not exist") from None
    except OSError as exc:
        raise NetnsError(name, f"cannot remove {path}: {exc.strerror or exc}") from exc


def setup_veth(*, netns: str, host_ifname: str, ns_ifname: str, host_addr: str | None = None,
               ns_addr: str | Sequence[str] | None = None, ns_mac: str | None = None,
               host_mac: str | None = None) -> VethPair:
    """Create a veth pair: ``host_ifname`` here, ``ns_ifname`` inside ``netns``; address both; links up.

    ``lo`` in the netns is brought up too. ``ns_addr`` may be several CIDRs.
    On failure the half-made link is deleted. Raises :class:`NetnsError`.
    """
    for ifname in (host_ifname, ns_ifname):
        if not ifname or len(ifname) > _IFNAMSIZ or "/" in ifname or " " in ifname:
            raise NetnsError(ifname, f"invalid interface name (1-{_IFNAMSIZ} characters, no '/' or space)")
    ns_addrs = [ns_addr] if isinstance(ns_addr, str) else list(ns_addr or [])
    for cidr in [host_addr, *ns_addrs]:
        if cidr is not None:
            _parse_cidr(cidr)
    if not netns_exists(netns):
        raise NetnsError(netns, f"network namespace {netns_path(netns)} does not exist; create_netns() it first")
    ns_fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)  # works for names and /proc paths
    try:
        return _setup_veth(netns, ns_fd, host_ifname, ns_ifname, host_addr, ns_addrs, ns_mac, host_mac)
    finally:
        os.close(ns_fd)


def _setup_veth(netns: str, ns_fd: int, host_ifname: str, ns_ifname: str, host_addr: str | None,
                ns_addrs: list[str], ns_mac: str | None, host_mac: str | None) -> VethPair:
    peer: dict[str, Any] = {"ifname": ns_ifname, "net_ns_fd": ns_fd}
    if ns_mac:
        peer["address"] = ns_mac
    with _iproute() as ipr:
        if ipr.link_lookup(ifname=host_ifname):
            raise NetnsError(host_ifname, "a link with this name already exists in the host namespace")
        link: dict[str, Any] = {"ifname": host_ifname, "kind": "veth", "peer": peer}
        if host_mac:
            link["address"] = host_mac
        _call(host_ifname, ipr.link, "add", **link)
        try:
            idx = ipr.link_lookup(ifname=host_ifname)[0]
            if host_addr:
                _add_addr(ipr, host_ifname, idx, host_addr)
            _call(host_ifname, ipr.link, "set", index=idx, state="up")
            host_mac = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
            with _ipr(netns) as ns:
                nidx = _lookup(ns, netns, ns_ifname)
                for cidr in ns_addrs:
                    _add_addr(ns, ns_ifname, nidx, cidr)
                _call(netns, ns.link, "set", index=nidx, state="up")
                _call(netns, ns.link, "set", index=1, state="up")
                ns_mac = ns.get_links(nidx)[0].get_attr("IFLA_ADDRESS")
        except BaseException:
            _delete_link(ipr, host_ifname)
            raise
    return VethPair(netns=netns, host_ifname=host_ifname, ns_ifname=ns_ifname, host_addr=host_addr,
                    ns_addr=ns_addrs[0] if ns_addrs else None, host_mac=host_mac or "", ns_mac=ns_mac or "")


def add_addresses(ifname: str, cidrs: Iterable[str]) -> None:
    """Add more addresses to link ``ifname`` of the caller's netns. Raises :class:`NetnsError`."""
    with _iproute() as ipr:
        idx = _lookup(ipr, "the host namespace", ifname)
        for cidr in cidrs:
            _add_addr(ipr, ifname, idx, cidr)


def teardown(pair: VethPair | None = None, *, netns: str | None = None,
             host_ifname: str | None = None) -> None:
    """Delete the host end of a veth (its peer goes with it) and the named netns.

    Give a :class:`VethPair` or ``netns``/``host_ifname``. Whatever is already
    gone is skipped, so it is safe in a fixture finalizer. Raises :class:`NetnsError`.
    """
    if pair is not None:
        netns = netns or pair.netns
        host_ifname = host_ifname or pair.host_ifname
    if host_ifname:
        with _iproute() as ipr:
            _delete_link(ipr, host_ifname)
    if netns:
        delete_netns(netns, missing_ok=True)


# -- helpers ---------------------------------------------------------------

def _ipr(netns: str) -> IPRoute:
    """An IPRoute socket opened inside ``netns`` (flags=0: never create it by accident)."""
    try:
        return _iproute(netns=netns_path(netns), flags=0)
    except (OSError, _netlink_error()) as exc:
        raise NetnsError(netns, f"cannot open a netlink socket in it: {exc}") from exc


def _call(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except _netlink_error() as exc:
        raise NetnsError(name, f"netlink {args[0] if args else ''} failed: {os.strerror(exc.code)}") from exc


def _lookup(ipr: IPRoute, netns: str, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NetnsError(ifname, f"link not found in netns {netns}")
    return found[0]


def _parse_cidr(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    import ipaddress

    if "/" not in cidr:
        raise NetnsError(cidr, "address needs a prefix length, e.g. 10.231.1.2/24")
    try:
        return ipaddress.ip_interface(cidr)
    except ValueError as exc:
        raise NetnsError(cidr, f"invalid address: {exc}") from None


def _add_addr(ipr: IPRoute, ifname: str, index: int, cidr: str) -> None:
    iface = _parse_cidr(cidr)
    _call(ifname, ipr.addr, "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def _delete_link(ipr: IPRoute, ifname: str) -> None:
    try:
        ipr.link("del", ifname=ifname)
    except _netlink_error() as exc:
        if exc.code not in (errno.ENODEV, errno.ENOENT):
            raise NetnsError(ifname, f"cannot delete link: {os.strerror(exc.code)}") from exc


def _remove_stale(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- pyroute2, imported on first use -----------------------------------------
# Importing pyroute2 costs ~0.25 s; a checkpoint or restore whose netns is
# still there never needs it on its critical path.

def _iproute(**kwargs: Any) -> "IPRoute":
    from pyroute2 import IPRoute

    return IPRoute(**kwargs)


def _pyroute2_netns() -> Any:
    from pyroute2 import netns

    return netns


def _netlink_error() -> type[Exception]:
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError
