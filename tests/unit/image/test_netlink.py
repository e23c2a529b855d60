"""The iproute2 dumps of the stored checkpoint's network namespace (ifaddr, route)."""

from __future__ import annotations

import socket

import pytest

from criu_image import Checkpoint, ImageError, TruncatedImage
from criu_image.netlink import parse_addresses, parse_routes
from tests.unit.image.sources import stored


def _ns():
    (ns,) = Checkpoint(stored()).netns()
    return ns


def test_addresses_of_the_dumped_loopback() -> None:
    got = {(a.label, a.address, a.prefixlen) for a in _ns().parsed_addresses() if a.family == socket.AF_INET}
    assert got == {("lo", "127.0.0.1", 8), ("lo", "10.231.250.1", 24)}
    assert any(a.address == "::1" and a.prefixlen == 128 for a in _ns().parsed_addresses())
    lo = next(d for d in _ns().devices if d.name == "lo")
    assert {a.ifindex for a in _ns().parsed_addresses()} == {lo.ifindex}


def test_the_route_the_script_added() -> None:
    (route,) = [r for r in _ns().parsed_routes() if r.family == socket.AF_INET]
    assert (route.dst, route.dst_len, route.gateway, route.table) == ("10.231.251.0", 24, "10.231.250.2", 254)


def test_damaged_dumps_raise() -> None:
    data = _ns().addresses
    with pytest.raises(ImageError, match="not iproute2's"):
        parse_routes(data, "route-1.img")  # an address dump is no route dump
    for cut in range(len(data)):
        if cut in (4, len(data)):
            continue
        try:
            parse_addresses(data[:cut], "ifaddr-1.img")
        except (ImageError, TruncatedImage) as exc:
            assert "ifaddr-1.img" in str(exc)
        else:
            # whole messages only
            assert len(parse_addresses(data[:cut])) < len(parse_addresses(data))
