"""What can stop a service before it runs, as one line an operator can act on.

Every service raises a `StartupError` for a condition it cannot work around at start-up: a bad
setting (`ConfigError`), a port it cannot listen on (`ListenError`), storage it cannot use
(`StorageError`, including another process holding the data directory).
`polymm.service.runtime.run_service` prints the one line and exits 2, which the systemd unit
marks as not worth a restart (`RestartPreventExitStatus=2`): restarting cannot fix a setting.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

EXIT_STARTUP = 2


class StartupError(Exception):
    """The service cannot start; the message names the cause and what to change."""

    label = ""  # printed before the message when set (e.g. "config error")


class ListenError(StartupError):
    """A listening socket could not be opened (port in use, host not resolvable or not local)."""


class StorageError(StartupError):
    """A directory the service writes to cannot be created or used."""


_LISTEN_REASONS = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "address not available on this host",
    errno.EACCES: "permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE)",
}


def listen_error(host: str, port: int, exc: OSError) -> ListenError:
    """ListenError for a failed bind of host:port, e.g. 'cannot listen on 0.0.0.0:9001: address
    already in use'; names LISTEN_HOST when the name does not resolve."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return ListenError(
            f"cannot listen on {where}: LISTEN_HOST={host!r} does not resolve ({exc.strerror})"
        )
    reason = _LISTEN_REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return ListenError(f"cannot listen on {where}: {reason}")


def storage_error(setting: str, path: Path, exc: OSError, doing: str = "cannot create") -> StorageError:
    """StorageError naming the setting and the OS's reason, e.g. "DATA_DIR='/data': cannot create
    (permission denied)"."""
    where = f"{setting}={str(path)!r}"
    if exc.filename and str(exc.filename) != str(path):
        where += f" ({exc.filename})"
    return StorageError(f"{where}: {doing} ({(exc.strerror or str(exc)).lower()})")
