"""The magic table: CRIU 4.2.1's numbers, one per name, agreeing with criu_rpc's image reader."""

from __future__ import annotations

from criu_image.kinds import MESSAGES
from criu_image.magic import MAGICS, NAMES, is_raw_name
from criu_rpc import images as rpc_images


def test_magics_are_distinct_and_shared_with_criu_rpc() -> None:
    assert len(NAMES) == len(MAGICS)
    assert MAGICS["INVENTORY"] == rpc_images.INVENTORY_MAGIC and MAGICS["STATS"] == rpc_images.STATS_MAGIC


def test_every_kind_has_a_magic() -> None:
    assert set(MESSAGES) <= set(MAGICS)


def test_raw_images_by_name() -> None:
    assert all(is_raw_name(n) for n in ("pages-1.img", "ifaddr-9.img", "route6-9.img", "tmpfs-dev-51.tar.gz.img",
                                        "sub/pages-2.img", "nftables-9.img"))
    assert not any(is_raw_name(n) for n in ("pagemap-1.img", "pstree.img", "netns-9.img", "netdev-9.img"))
