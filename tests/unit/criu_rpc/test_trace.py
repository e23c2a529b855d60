"""The client's debug log: a request as one line (TLS paths hidden), phases timed only when shown."""

from __future__ import annotations

import logging

import pytest

from criu_rpc.option_types import InheritFd
from criu_rpc.options import CriuOptions
from criu_rpc.trace import describe_message, timed


def test_a_request_is_one_line_of_its_set_fields():
    msg = CriuOptions(images_dir="/img", pid=5, tcp_established=True, external=("net[1]:x",),
                      inherit_fd=(InheritFd(key="pipe:[1]", fd=7),)).to_proto(images_dir_fd=4)
    msg.tls_key = "/etc/criu/key.pem"
    text = describe_message(msg)
    assert "images_dir_fd=4" in text and "pid=5" in text and "tcp_established=True" in text
    assert "external=['net[1]:x']" in text and "inherit_fd=[{key='pipe:[1]' fd=7}]" in text
    assert "tls_key=<hidden>" in text and "key.pem" not in text
    assert "leave_running" not in text  # unset fields are left out
    assert describe_message(None) == "-"


def test_timed_logs_only_when_debug_is_on(caplog):
    logger = logging.getLogger("criu_cr.test_trace")
    with caplog.at_level(logging.INFO, logger="criu_cr.test_trace"):
        with timed(logger, "phase %s", "one"):
            pass
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="criu_cr.test_trace"):
        with timed(logger, "container %r: %s", "web", "dump"):
            pass
        with pytest.raises(ValueError), timed(logger, "broken"):
            raise ValueError("x")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("container 'web': dump took ") and messages[0].endswith(" s")
    assert messages[1].startswith("broken failed after ")
