"""runtime.linux.caps: capability names and masks (pure parts)."""

from __future__ import annotations

from runtime.linux.caps import CAPABILITIES, mask, unknown_names


def test_names_are_the_kernels_numbers():
    assert CAPABILITIES["CAP_CHOWN"] == 0
    assert CAPABILITIES["CAP_NET_BIND_SERVICE"] == 10
    assert CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert len(set(CAPABILITIES.values())) == len(CAPABILITIES)


def test_a_mask_has_one_bit_per_known_name():
    assert mask(None) == 0 and mask([]) == 0
    assert mask(["CAP_CHOWN", "CAP_KILL"]) == (1 << 0) | (1 << 5)
    assert mask(["CAP_KILL", "CAP_KILL"]) == 1 << 5
    assert mask(["CAP_NOT_A_THING"]) == 0  # unknown names are for unknown_names to report


def test_unknown_names_are_listed_once_across_all_sets():
    caps = {"bounding": ["CAP_KILL", "CAP_FLY"], "effective": ["CAP_FLY", "CAP_SWIM"], "ambient": None}
    assert unknown_names(caps) == ["CAP_FLY", "CAP_SWIM"]
    assert unknown_names({"permitted": ["CAP_SYS_ADMIN"]}) == []
