"""How a client reaches CRIU: the connection to open, a request's options
prepared for that connection, and CRIU's feature answer once known.

:class:`~criu_rpc.client.CriuClient` makes one :class:`Connector` and hands
it to every :class:`~criu_rpc.dump_session.DumpSession` it opens, so a
session never reaches into the client's internals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .errors import InvalidOptionError
from .locate import locate
from .notify import NotifyHandler
from .options import CriuOptions
from .prepare import PreparedRequest
from .session import Features, ReqType
from .trace import log
from .transport import Connection, ServiceConnection, SwrkProcess

__all__ = ["Connector", "ALL_FEATURES"]

#: The FEATURE_CHECK question: CRIU answers for every feature asked about.
ALL_FEATURES = Features(mem_track=True, lazy_pages=True, pidfd_store=True)


class Connector:
    """Opens connections to one CRIU: a ``criu swrk`` child of ``criu_path``,
    or a ``criu service`` listening at ``service_address``.

    ``features`` is CRIU's FEATURE_CHECK answer once some request has asked
    (None before): it does not change for a given CRIU, so it is asked once.
    """

    def __init__(self, criu_path: str | None, service_address: str | None) -> None:
        self._criu_path = criu_path
        self.service_address = service_address
        self.features: Features | None = None

    @property
    def criu_path(self) -> str:
        """The criu binary used for swrk, looked up on first use (raises CriuNotFoundError)."""
        if self._criu_path is None or "/" not in self._criu_path:
            self._criu_path = locate(self._criu_path)
        return self._criu_path

    def connect(self, pass_fds: Sequence[int] = ()) -> Connection:
        """A new connection; a swrk child holds ``pass_fds`` at their numbers.

        Raises CriuNotFoundError (swrk: criu cannot be executed), OSError
        (service: nothing listens at the address).
        """
        if self.service_address is not None:
            log.debug("connecting to the criu service at %s", self.service_address)
            return ServiceConnection(self.service_address)
        fds = sorted(set(pass_fds))
        log.debug("starting %s swrk, handing it fds %s", self.criu_path, fds)
        return SwrkProcess(self.criu_path, pass_fds=fds)

    def prepare(self, opts: CriuOptions, rtype: ReqType, notify: NotifyHandler | None) -> PreparedRequest:
        """``opts`` made into one request for this kind of connection (close it when done).

        Raises InvalidOptionError (not CriuOptions; an option a service
        connection cannot carry), OSError (a directory cannot be opened).
        """
        if not isinstance(opts, CriuOptions):
            raise InvalidOptionError("opts", f"must be CriuOptions, not {type(opts).__name__}")
        if notify is not None and not opts.notify_scripts:
            # CRIU only sends notifies when asked to.
            opts = dataclasses.replace(opts, notify_scripts=True)
        if self.service_address is not None:
            _check_service_opts(opts)
        return PreparedRequest(opts, rtype, by_path=self.service_address is not None)


def _check_service_opts(opts: CriuOptions) -> None:
    for name, bad in (("inherit_fd", bool(opts.inherit_fd)), ("rst_sibling", opts.rst_sibling),
                      ("ps", opts.ps is not None and opts.ps.fd is not None),
                      ("images_dir_fd", opts.images_dir_fd is not None)):
        if bad:
            raise InvalidOptionError(name, "not possible over a criu service connection "
                                     "(CRIU cannot receive our fds there); use swrk")

