"""Operator messages go through logging (criu_cr.*); the CLI prints them as its other messages."""

from __future__ import annotations

import logging

from runtime.cli import install_log_handler
from runtime.cli.logsetup import OperatorHandler


def test_the_cli_prints_log_records_as_warnings_on_stderr(capsys):
    logger = logging.getLogger("criu_cr")
    before, level = list(logger.handlers), logger.level
    try:
        install_log_handler()
        install_log_handler()  # once per process, however often main() runs
        assert sum(isinstance(h, OperatorHandler) for h in logger.handlers) == 1
        logging.getLogger("criu_cr.cr").warning("container %r: the %s was interrupted", "c1", "checkpoint")
        logging.getLogger("criu_cr.container").info("not for the operator")
        out = capsys.readouterr()
        assert out.err == "criu-cr: warning: container 'c1': the checkpoint was interrupted\n"
        assert out.out == ""
    finally:
        logger.handlers[:] = before
        logger.setLevel(level)
