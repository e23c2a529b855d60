"""criu_rpc: a typed client for CRIU's RPC protocol."""

from .deadline import *  # noqa: F401,F403
from .deadline import __all__ as _deadline_all
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

# The RPC client (session core, notify hooks, transports, operations).
from .client import *  # noqa: F401,F403,E402
from .client import __all__ as _client_all  # noqa: E402
from .notify import *  # noqa: F401,F403,E402
from .notify import __all__ as _notify_all  # noqa: E402
from .results import *  # noqa: F401,F403,E402
from .results import __all__ as _results_all  # noqa: E402
from .session import *  # noqa: F401,F403,E402
from .session import __all__ as _session_all  # noqa: E402
from .transport import *  # noqa: F401,F403,E402
from .transport import __all__ as _transport_all  # noqa: E402

__all__ = list(_errors_all)
__all__ += _deadline_all
__all__ += _images_all
__all__ += _locate_all
__all__ += _logs_all
__all__ += _options_all
__all__ += _optparts_all
__all__ += _client_all + _notify_all + _results_all + _session_all + _transport_all
