"""`veche admin`: users and rooms from a shell (what /_synapse/admin does, on the config's
database)."""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import Any

import click

from veche.cli import _load, _open_hs
from veche.config import Config


@click.group("admin")
def admin_group() -> None:
    """Administer users and rooms (what the admin API at /_synapse/admin does).

    Commands that change rooms or sessions (deactivate-user, reset-password, delete-room,
    send-notice) need the server stopped; while it runs, use the admin API instead.
    """


_config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                              envvar="VECHE_CONFIG")


def _admin_op(config_path: str | None, op: Any, *, offline: bool = False) -> Any:
    """Run op(hs) on a HomeServer over the config's database; `offline`: only while the
    server is not running (it sends events or ends sessions, which one process does)."""
    from veche.errors import MatrixError

    lock = _refuse_while_running(_load(config_path, {})) if offline else None

    async def run() -> Any:
        hs = _open_hs(config_path)
        try:
            return await op(hs)
        except MatrixError as e:
            raise click.ClickException(e.error) from e
        finally:
            await hs.close()

    try:
        return asyncio.run(run())
    finally:
        if lock is not None:
            lock.release()


def _refuse_while_running(config: Config) -> Any:
    """The data directory's lock, held while the command runs so no server starts meanwhile;
    refused when a server holds it or answers on the config's port, or, for a scale-out
    deployment (whose processes take no lock), while any of its processes has a database
    session."""
    import socket
    from pathlib import Path

    from veche.datalock import DataDirLock, DataDirLocked

    refusal = click.ClickException(
        f"the server is running (http://{config.listen.host}:{config.listen.port}): stop it "
        "first, or use the admin API (/_synapse/admin)")
    if config.clustered:  # many processes, each on a port of its own: ask the database
        from veche.cluster.node import running_workers

        workers = running_workers(config.database_url)
        if workers:
            raise click.ClickException(
                f"the server is running ({', '.join(sorted(workers))}): stop every process "
                "first, or use the admin API (/_synapse/admin)")
        return None
    lock = DataDirLock(Path(config.data_dir))
    try:
        lock.acquire()
    except DataDirLocked:
        raise refusal from None
    except OSError:
        lock = None  # no data directory yet: no server has run there
    try:
        with socket.create_connection((config.listen.host, config.listen.port), timeout=1):
            pass
    except OSError:
        return lock
    if lock is not None:
        lock.release()
    raise refusal


def _user_id(config_path: str | None, user: str) -> str:
    if user.startswith("@"):
        return user
    return f"@{user}:{_load(config_path, {}).server_name}"


@admin_group.command("list-users")
@click.option("--name", help="Only users whose ID or display name contains this.")
@click.option("--deactivated", is_flag=True, help="Include deactivated users.")
@_config_option
def admin_list_users(name: str | None, deactivated: bool, config_path: str | None) -> None:
    """List local users: ID, admin, deactivated, display name."""
    out = _admin_op(config_path, lambda hs: hs.admin_users.list_users(
        0, 1_000_000, name=name, user_id=None, deactivated=deactivated, admins=None,
        order_by="name", backwards=False))
    for u in out["users"]:
        flags = ",".join(f for f in ("admin", "deactivated", "locked") if u[f]) or "-"
        click.echo(f"{u['name']}\t{flags}\t{u['displayname'] or ''}")


@admin_group.command("set-admin")
@click.argument("user")
@click.option("--revoke", is_flag=True, help="Take server admin rights away instead.")
@_config_option
def admin_set_admin(user: str, revoke: bool, config_path: str | None) -> None:
    """Make a user a server admin (or, with --revoke, no longer one)."""
    user_id = _user_id(config_path, user)
    _admin_op(config_path, lambda hs: hs.admin_users.set_admin(user_id, not revoke))
    click.echo(f"{user_id} is {'no longer ' if revoke else ''}a server admin")


@admin_group.command("deactivate-user")
@click.argument("user")
@_config_option
def admin_deactivate_user(user: str, config_path: str | None) -> None:
    """Deactivate an account: it leaves its rooms and every session ends."""
    user_id = _user_id(config_path, user)
    _admin_op(config_path, lambda hs: hs.admin_users.deactivate(user_id), offline=True)
    click.echo(f"deactivated {user_id}")


@admin_group.command("reset-password")
@click.argument("user")
@click.option("--password", help="The new password (read from stdin when not given).")
@click.option("--keep-sessions", is_flag=True, help="Do not log the user's devices out.")
@_config_option
def admin_reset_password(user: str, password: str | None, keep_sessions: bool,
                         config_path: str | None) -> None:
    """Set a user's password; their devices are logged out."""
    if password is None:
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else \
            getpass.getpass("New password: ")
    user_id = _user_id(config_path, user)
    _admin_op(config_path, lambda hs: hs.admin_users.reset_password(
        user_id, password, not keep_sessions), offline=True)
    click.echo(f"password of {user_id} reset")


@admin_group.command("list-rooms")
@click.option("--search", help="Only rooms whose name, alias or ID contains this.")
@_config_option
def admin_list_rooms(search: str | None, config_path: str | None) -> None:
    """List rooms: ID, joined members, name."""
    out = _admin_op(config_path, lambda hs: hs.admin_rooms.list_rooms(
        0, 1_000_000, "joined_members", False, search))
    for r in out["rooms"]:
        click.echo(f"{r['room_id']}\t{r['joined_members']}\t{r['name'] or ''}")


@admin_group.command("delete-room")
@click.argument("room_id")
@click.option("--block/--no-block", default=True, show_default=True,
              help="Refuse joins and invites to the room from now on.")
@click.option("--keep-history", is_flag=True, help="Do not purge: former members keep reading.")
@_config_option
def admin_delete_room(room_id: str, block: bool, keep_history: bool,
                      config_path: str | None) -> None:
    """Delete a room: every local member leaves, its aliases go, its history is closed."""
    # Recorded as who blocked the room (the admin API names the admin there).
    by = f"@veche-cli:{_load(config_path, {}).server_name}"
    out = _admin_op(config_path, lambda hs: hs.admin_rooms.delete_room(
        by, room_id, {"block": block, "purge": not keep_history}), offline=True)
    click.echo(f"deleted {room_id}: {len(out['kicked_users'])} members removed"
               + (f", {len(out['failed_to_kick_users'])} could not be" if
                  out["failed_to_kick_users"] else "")
               + (f", aliases {', '.join(out['local_aliases'])} deleted" if
                  out["local_aliases"] else ""))


@admin_group.command("send-notice")
@click.argument("user")
@click.argument("message")
@_config_option
def admin_send_notice(user: str, message: str, config_path: str | None) -> None:
    """Send a server notice to a user (in their server-notices room)."""
    user_id = _user_id(config_path, user)
    event_id = _admin_op(config_path, lambda hs: hs.admin_content.send_server_notice(
        {"user_id": user_id, "content": {"msgtype": "m.text", "body": message}}, None),
        offline=True)
    click.echo(f"sent {event_id} to {user_id}")
