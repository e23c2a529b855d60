"""criu_rpc: a typed client for CRIU's RPC protocol."""

from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .images import *  # noqa: F401,F403
from .images import __all__ as _images_all
from .locate import *  # noqa: F401,F403
from .locate import __all__ as _locate_all
from .logs import *  # noqa: F401,F403
from .logs import __all__ as _logs_all
from .options import *  # noqa: F401,F403
from .options import __all__ as _options_all
from .optparts import *  # noqa: F401,F403
from .optparts import __all__ as _optparts_all

__all__ = list(_errors_all)
__all__ += _images_all
__all__ += _locate_all
__all__ += _logs_all
__all__ += _options_all
__all__ += _optparts_all
