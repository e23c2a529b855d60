"""DumpSession gets what it needs from a Connector, never from CriuClient's internals."""

from __future__ import annotations

from pathlib import Path

import pytest

from criu_rpc import CriuClient, CriuOptions, FeatureUnavailableError
from criu_rpc.connector import Connector
from criu_rpc.dump_session import DumpSession

from .fake_criu_fixture import fake_criu, zombies_of_us  # noqa: F401 (fixture)
from .test_client_fake import MEM_TRACK_OK, PRE_DUMP_OK, requests


def test_a_session_runs_on_a_bare_connector(fake_criu, tmp_path: Path) -> None:
    connector = Connector(fake_criu([{"recv": "FEATURE_CHECK"}, MEM_TRACK_OK,
                                     {"recv": "PRE_DUMP"}, PRE_DUMP_OK,
                                     {"recv": "DUMP"}, {"send": "dump"}]), None)
    session = DumpSession(connector, None, [])
    try:
        session.pre_dump(CriuOptions(images_dir=tmp_path, pid=7))
        result = session.dump(CriuOptions(images_dir=tmp_path, pid=7))
    finally:
        session.close()
    assert result.pid == 7 and result.images_dir == str(tmp_path)
    assert connector.features is not None and connector.features.mem_track is True
    assert [r["type"] for r in requests(fake_criu.journal())] == ["FEATURE_CHECK", "PRE_DUMP", "DUMP"]
    assert zombies_of_us() == []


def test_the_clients_feature_answer_serves_its_sessions(fake_criu, tmp_path: Path) -> None:
    # One FEATURE_CHECK per client: the session asks no second time.
    client = CriuClient(fake_criu([{"recv": "FEATURE_CHECK"}, {"send": "feature_check"}]))
    assert client.feature_check().mem_track is False
    with pytest.raises(FeatureUnavailableError), client.dump_session() as session:
        session.pre_dump(CriuOptions(images_dir=tmp_path, pid=7))
    assert [r["type"] for r in requests(fake_criu.journal())] == ["FEATURE_CHECK"]
