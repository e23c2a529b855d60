"""Reusable pytest harness for criu-cr and projects that run containers with it.

Load the fixtures with ``pytest_plugins = ["runtime.testing.plugin"]`` (the
installed package also registers them as the ``criu_cr`` pytest11 plugin).
See docs/harness.md.
"""

from runtime.testing.bundle import BUSYBOX, DEFAULT_APPLETS, build_busybox_bundle, default_spec
from runtime.testing.net import http_get, wait_tcp

__all__ = ["BUSYBOX", "DEFAULT_APPLETS", "build_busybox_bundle", "default_spec", "http_get", "wait_tcp"]
