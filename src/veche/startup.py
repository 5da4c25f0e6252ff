"""Start-up: a bad setup (database, data directory, address) ends in one line saying what is
wrong, where, and what to do, instead of a traceback."""

from __future__ import annotations

import getpass
import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from veche.storage.database import DatabaseOpenError

if TYPE_CHECKING:
    import ssl

    from veche.config import Config, TlsConfig
    from veche.datalock import DataDirLock
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

# Data files are the server's alone: they hold password hashes, tokens and messages.
PRIVATE_UMASK = 0o077


class StartupError(Exception):
    pass


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def prepare_dir(path: Path, what: str, setting: str) -> None:
    """Create the directory if needed, make sure we can write in it, and keep it private."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".veche-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise StartupError(
            f"the {what} {path} is not usable ({e.strerror}): make it writable by user {_user()}"
            f" or set {setting}") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077 and path.stat().st_uid == os.getuid():
        logger.warning("the %s %s was open to other users (mode %o); making it private (700)",
                       what, path, mode)
        path.chmod(0o700)


def lock_data_dir(config: Config) -> DataDirLock:
    """Take the data directory's lock for as long as the server runs (`veche restore` refuses
    to run while it is held); a second server on the same data directory stops here."""
    from veche.datalock import DataDirLock, DataDirLocked

    data_dir = Path(config.data_dir)
    prepare_dir(data_dir, "data directory", "data_dir (VECHE_DATA_DIR)")
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirLocked as e:
        raise StartupError(f"{e}; stop it first, or give this server another data_dir") from None
    except OSError as e:
        raise StartupError(f"{lock.path}: {e.strerror or e}; check that user {_user()} can"
                           " write there") from None
    return lock


def open_homeserver(config: Config) -> HomeServer:
    from veche.server import HomeServer

    data_dir = Path(config.data_dir)
    prepare_dir(data_dir, "data directory", "data_dir (VECHE_DATA_DIR)")
    if config.media.store_path:
        prepare_dir(Path(config.media.store_path), "media directory",
                    "[media] store_path (VECHE_MEDIA__STORE_PATH)")
    try:
        hs = HomeServer(config)
    except (DatabaseOpenError, sqlite3.Error, OSError) as e:
        raise _explain(e, config) from None
    try:
        _ = hs.signing_key, hs.media  # created now, not on some user's first request
    except (sqlite3.Error, OSError) as e:
        hs.db.close()
        raise _explain(e, config) from None
    return hs


def _explain(e: Exception, config: Config) -> StartupError:
    if isinstance(e, DatabaseOpenError):
        return StartupError(str(e))
    if isinstance(e, sqlite3.Error):
        return StartupError(
            f"the SQLite database {config.database_url.removeprefix('sqlite:///')}: {e}; check"
            f" that it and its directory are writable by user {_user()}")
    assert isinstance(e, OSError)
    where = e.filename or config.data_dir
    return StartupError(f"{where}: {e.strerror or e}; check that user {_user()} can write there")


def listen_error(host: str, port: int, e: OSError) -> StartupError:
    reason = os.strerror(e.errno) if e.errno else str(e)
    return StartupError(
        f"cannot listen on {host}:{port}: {reason}; stop whatever uses it or choose another"
        " address with --host/--port or [listen] host/port")


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The server-side TLS context of [tls]; one line naming the file when it cannot load."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.certificate_path, tls.private_key_path)
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e)
        raise StartupError(
            f"cannot load the TLS certificate {tls.certificate_path} with key"
            f" {tls.private_key_path}: {reason}; check [tls] certificate_path and"
            " private_key_path") from None
    return context
