"""The `veche` command."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from veche import __version__
from veche.config import SAMPLE_CONFIG, Config, ConfigError, load_config

logger = logging.getLogger("veche")


def _load(config_path: str | None, overrides: dict[str, Any]) -> Config:
    try:
        return load_config(config_path, overrides)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


@click.group()
@click.version_option(__version__, prog_name="veche")
def cli() -> None:
    """Veche: a self-hosted Matrix homeserver."""
    from veche.startup import PRIVATE_UMASK

    os.umask(PRIVATE_UMASK)  # the database, media and keys are readable by this user only


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG",
              help="TOML config file (see `veche generate-config`).")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8008).")
@click.option("--dev", is_flag=True, help="Open registration and no rate limits (trials, benchmarks).")
@click.option("--worker-name", help="This process's name among many sharing [bus] (default: host-port).")
@click.option("--log-level", default="INFO", show_default=True)
def serve(config_path: str | None, host: str | None, port: int | None, dev: bool,
          worker_name: str | None, log_level: str) -> None:
    """Run the homeserver."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {}
    if host or port is not None:
        overrides["listen"] = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if dev:
        overrides["dev"] = True
    if worker_name:
        overrides["bus"] = {"worker_name": worker_name}
    config = _load(config_path, overrides)
    if config.clustered and not config.bus.worker_name:
        import re
        import socket

        name = re.sub(r"[^A-Za-z0-9._-]", "-", f"{socket.gethostname()}-{config.listen.port}")
        config.bus.worker_name = name
    if config.app_service_config_files:
        from veche.services.appservices import load_registrations

        try:
            load_registrations(config.app_service_config_files, config.server_name)
        except ValueError as e:
            raise click.ClickException(f"application service registration: {e}") from None
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from veche.startup import StartupError

    try:
        asyncio.run(_serve(config))
    except StartupError as e:
        raise click.ClickException(str(e)) from None


async def _serve(config: Config) -> None:
    from veche.listener import listen
    from veche.startup import listen_error, lock_data_dir, open_homeserver

    # The processes of a scale-out deployment share one data directory (media, signing key).
    lock = None if config.clustered else lock_data_dir(config)
    # Before the port opens: a SIGTERM as soon as it accepts is a graceful stop too.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hs = open_homeserver(config)
    grace = config.listen.shutdown_grace_s
    if hs.cluster is not None:
        await hs.cluster.start()  # before serving: positions must be known first
    try:
        runner = await listen(hs.make_app(), config.listen.host, config.listen.port,
                              header_timeout_s=config.listen.header_timeout_s,
                              keepalive_timeout_s=config.listen.keepalive_timeout_s,
                              shutdown_timeout_s=grace)
    except OSError as e:
        await hs.close()
        raise listen_error(config.listen.host, config.listen.port, e) from None
    logger.info(
        "Veche %s serving %s on http://%s:%s (database: %s%s)", __version__, config.server_name,
        config.listen.host, config.listen.port, config.database_url.split(":", 1)[0],
        ", dev mode" if config.dev else "",
    )
    runners = [runner]
    try:
        for extra in (_listen_tls, _listen_metrics):
            extra_runner = await extra(hs, config)
            if extra_runner is not None:
                runners.append(extra_runner)
    except BaseException:
        for r in runners:
            await r.cleanup()
        await hs.close()
        raise
    if config.federation.enabled and hs.cluster is None:  # else one process holds it (cluster/)
        hs.federation_sender.start()  # resumes the outbound queues kept in the database
    _release_startup_memory()
    await stop.wait()
    await _shut_down(hs, runners, grace)
    if lock is not None:
        lock.release()


async def _shut_down(hs: Any, runners: list[Any], grace: float) -> None:
    """Stop accepting, answer parked long-polls, let requests, event persists and queued
    application-service transactions finish within `grace` seconds, then close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    # Past the grace period whatever still runs is abandoned; the federation queue is in the
    # database, so nothing acknowledged is lost. A hang in closing must not outlive it long.
    loop.call_later(grace + 5, _exit_now)
    logger.info("shutting down: %.0f s for requests in progress", grace)
    hs.stopping = True
    for r in runners:
        for site in list(r.sites):
            await site.stop()  # no new connections
    hs.notifier.close()  # long-polling /syncs answer now instead of at their timeout
    try:
        # Each connection finishes the request it is handling (and closes); a request still
        # running at the deadline is cancelled.
        await asyncio.wait_for(asyncio.gather(*(r.cleanup() for r in runners)),
                               max(0.0, deadline - loop.time()))
    except TimeoutError:
        logger.warning("requests still running at the end of the grace period were cancelled")
    if not await hs.finish_lasting(max(0.0, deadline - loop.time())):
        logger.warning("background work still running at the end of the grace period")
    if "appservices" in hs.__dict__ and \
            not await hs.appservices.flush(max(0.0, deadline - loop.time())):
        logger.warning("application-service transactions not delivered before shutdown;"
                       " they are lost")
    await hs.close()
    logger.info("stopped")


def _exit_now() -> None:
    logger.error("shutdown took too long; exiting now")
    logging.shutdown()
    os._exit(1)


async def _listen_metrics(hs: Any, config: Config) -> Any:
    """The Prometheus listener ([metrics] enabled)."""
    if not config.metrics.enabled:
        return None
    from veche.listener import listen
    from veche.metrics import MetricsServer
    from veche.startup import listen_error

    m = config.metrics
    try:
        runner = await listen(MetricsServer(hs).app(), m.bind_address, m.port,
                              header_timeout_s=config.listen.header_timeout_s,
                              keepalive_timeout_s=config.listen.keepalive_timeout_s,
                              shutdown_timeout_s=1.0)
    except OSError as e:
        raise listen_error(m.bind_address, m.port, e) from None
    logger.info("metrics on http://%s:%s/metrics", m.bind_address, m.port)
    return runner


async def _listen_tls(hs: Any, config: Config) -> Any:
    """The federation TLS listener ([tls] set, [federation] enabled with a tls_port)."""
    from veche.http.app import make_federation_app
    from veche.listener import listen
    from veche.startup import listen_error, tls_context

    fed = config.federation
    if not (fed.enabled and fed.tls_port and config.tls.enabled):
        return None
    context = tls_context(config.tls)
    try:
        runner = await listen(make_federation_app(hs), config.listen.host, fed.tls_port,
                              header_timeout_s=config.listen.header_timeout_s,
                              keepalive_timeout_s=config.listen.keepalive_timeout_s,
                              shutdown_timeout_s=config.listen.shutdown_grace_s,
                              ssl_context=context)
    except OSError as e:
        raise listen_error(config.listen.host, fed.tls_port, e) from None
    logger.info("federation over TLS on https://%s:%s", config.listen.host, fed.tls_port)
    return runner


@cli.command("generate-config")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--server-name", help="Set server_name in the generated file.")
def generate_config(output: str | None, server_name: str | None) -> None:
    """Print a config file with every option and its default."""
    text = SAMPLE_CONFIG
    if server_name:
        text = text.replace('server_name = "localhost:8008"', f'server_name = "{server_name}"', 1)
    if output:
        if Path(output).exists():
            raise click.ClickException(f"{output} exists; not overwriting")
        Path(output).write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


def _open_hs(config_path: str | None) -> Any:
    from veche.server import HomeServer
    from veche.storage.database import DatabaseOpenError

    try:
        return HomeServer(_load(config_path, {}))
    except DatabaseOpenError as e:
        raise click.ClickException(str(e)) from None


@cli.command("register-user")
@click.argument("user")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG")
@click.option("--password", help="Password (asked for when not given).")
@click.option("--admin", is_flag=True, help="Make the user a server admin.")
def register_user(user: str, config_path: str | None, password: str | None, admin: bool) -> None:
    """Create an account (works whether the server is running or not)."""
    if password is None:
        if not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Again: ") != password:
                raise click.ClickException("passwords differ")
    if not password:
        raise click.ClickException("an empty password is not allowed")
    localpart = user[1:].split(":", 1)[0] if user.startswith("@") else user

    async def run() -> str:
        from veche.errors import MatrixError

        hs = _open_hs(config_path)
        try:
            return await hs.accounts.create_user(localpart, password, admin=admin)  # type: ignore[no-any-return]
        except MatrixError as e:
            raise click.ClickException(e.error) from e
        finally:
            await hs.close()

    click.echo(f"created {asyncio.run(run())}")


@cli.command("create-registration-token")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG")
@click.option("--token", help="The token text (random when not given).")
@click.option("--uses", type=int, help="How many registrations it allows (unlimited when not given).")
@click.option("--expires-in-days", type=float, help="Expiry (never when not given).")
def create_registration_token(config_path: str | None, token: str | None, uses: int | None,
                              expires_in_days: float | None) -> None:
    """Create a token for m.login.registration_token registration."""
    import time

    expiry = int((time.time() + expires_in_days * 86400) * 1000) if expires_in_days else None

    async def run() -> str:
        from veche.errors import MatrixError

        hs = _open_hs(config_path)
        try:
            return await hs.accounts.create_registration_token(token, uses, expiry)  # type: ignore[no-any-return]
        except MatrixError as e:
            raise click.ClickException(e.error) from e
        finally:
            await hs.close()

    click.echo(asyncio.run(run()))


@cli.group()
def media() -> None:
    """Media repository administration."""


def _media_op(config_path: str | None, op: Any) -> Any:
    async def run() -> Any:
        hs = _open_hs(config_path)
        try:
            return await op(hs.media)
        except ValueError as e:
            raise click.ClickException(str(e)) from e
        finally:
            await hs.close()

    return asyncio.run(run())


@media.command("delete")
@click.argument("mxc")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG")
def media_delete(mxc: str, config_path: str | None) -> None:
    """Delete media (mxc://server/id) and its thumbnails: local media, or a cached copy of
    another server's."""
    if not _media_op(config_path, lambda m: m.delete_mxc(mxc)):
        raise click.ClickException(f"{mxc}: no such media")
    click.echo(f"deleted {mxc}")


@media.command("quarantine")
@click.argument("mxc")
@click.option("--undo", is_flag=True, help="Lift the quarantine.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG")
def media_quarantine(mxc: str, undo: bool, config_path: str | None) -> None:
    """Quarantine media: nobody can download it any more (404)."""
    if not _media_op(config_path, lambda m: m.quarantine_mxc(mxc, not undo)):
        raise click.ClickException(f"{mxc}: no such media")
    click.echo(f"{'released' if undo else 'quarantined'} {mxc}")


def _duration_ms(value: str) -> int:
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
    try:
        number, unit = (value[:-1], value[-1]) if value[-1:] in units else (value, "d")
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise click.BadParameter(f"{value!r} is not a duration like 30d, 12h or 90m") from None


@media.command("purge")
@click.option("--older-than", required=True, help="Not downloaded for this long: 30d, 12h, 90m.")
@click.option("--remote-only", is_flag=True, help="Only cached media of other servers.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG")
def media_purge(older_than: str, remote_only: bool, config_path: str | None) -> None:
    """Delete media nobody has downloaded for a while."""
    ms = _duration_ms(older_than)
    count = _media_op(config_path, lambda m: m.purge(ms, remote_only))
    click.echo(f"purged {count} media")


@cli.command("rotate-signing-key")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG")
def rotate_signing_key(config_path: str | None) -> None:
    """Replace the server's signing key; the old one stays published as an old key.

    Takes effect when the server (re)starts.
    """
    from veche.keys import rotate_signing_key as rotate

    config = _load(config_path, {})
    try:
        old_id, new_id = rotate(Path(config.data_dir))
    except OSError as e:
        raise click.ClickException(f"{config.data_dir}: {e.strerror or e}") from None
    click.echo(f"signing key {new_id} replaces {old_id}; restart the server to use it")


@cli.command("backup")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG")
def backup_command(directory: str, config_path: str | None) -> None:
    """Copy the database, media, signing key and config into DIRECTORY (new or empty),
    consistent as of one moment, while the server runs. SQLite through its online backup
    API; PostgreSQL with pg_dump (which must be installed)."""
    from veche.backup import BackupError, backup

    config = _load(config_path, {})
    try:
        summary = backup(config, config_path, Path(directory))
    except (BackupError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"backed up {config.server_name} to {directory}: {summary.database} database,"
               f" {summary.media_files} media files ({summary.media_bytes} bytes)")


@cli.command("restore")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="VECHE_CONFIG")
@click.option("--force", is_flag=True, help="Replace the server already in data_dir.")
def restore_command(directory: str, config_path: str | None, force: bool) -> None:
    """Put a backup made by `veche backup` back, into the data_dir and database of the
    configuration. The server must be stopped."""
    from veche.backup import BackupError, restore

    config = _load(config_path, {})
    try:
        summary = restore(config, Path(directory), force=force)
    except (BackupError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"restored {config.server_name} from {directory}: {summary.database} database,"
               f" {summary.media_files} media files; start the server")
    if (Path(directory) / "config.toml").exists():
        click.echo(f"the configuration at backup time is in {Path(directory) / 'config.toml'}")


def main() -> None:
    cli()


def _release_startup_memory() -> None:
    """Hand the heap freed after start-up back to the OS (glibc keeps it otherwise), so an
    idle server's resident memory is what it actually uses."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass  # not glibc


# `veche admin ...` lives in its own module; it uses _load and _open_hs from here.
from veche.cli_admin import admin_group  # noqa: E402

cli.add_command(admin_group)
