"""runtime.cr.pending: the restore lock a monitor inherits, and the journal (no root needed)."""

from __future__ import annotations

import os

from runtime.cr import pending


def test_the_restore_lock_is_held_by_whoever_inherited_it(tmp_path):
    journal = str(tmp_path / "restore.json")
    assert not pending.restore_in_progress(journal)  # no lock file: nothing in progress
    fd = pending.hold_restore_lock(journal)
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:  # the "monitor": keeps the inherited fd until told to finish
        try:
            os.close(go_w)
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(fd)  # the parent lets go right after the fork ...
    try:
        assert pending.restore_in_progress(journal)  # ... and the child still holds it
    finally:
        os.close(go_w)  # EOF: the child finishes
        os.waitpid(child, 0)
    assert not pending.restore_in_progress(journal)  # gone with its last holder


def test_the_journal_merges_fields_and_goes_with_its_lock(tmp_path):
    journal = str(tmp_path / "restore.json")
    pending.write_journal(journal, monitor=12, monitor_start=34)
    pending.write_journal(journal, init=56)
    assert pending.read_journal(journal) == {"monitor": 12, "monitor_start": 34, "init": 56}
    assert os.stat(journal).st_mode & 0o777 == 0o600
    os.close(pending.hold_restore_lock(journal))
    pending.remove_journal(journal)
    assert os.listdir(tmp_path) == []
    assert pending.read_journal(journal) == {}
