"""The in-process state that other processes change, in one list.

Each entry wraps a service's method: the wrapper runs it here and tells every other process
to run it too (the local method, unwrapped, so nothing echoes back). Forgetting is enough
for caches (the next read goes to the database); typing notices, which live only in memory,
are applied on every process.

Not shared (each process keeps its own, see README "Many processes"): rate limits, the
typing serial in sync tokens, lazy-loading's record of members sent to a device. Kept off
with several processes: the to-device step's record of devices with empty inboxes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from veche.cluster.node import Cluster
    from veche.server import HomeServer

FEDERATION_LEASE = "federation-sender"
MEDIA_LEASE = "media-expiry"
MEDIA_EXPIRY_INTERVAL_S = 60.0


def _mirror(cluster: Cluster, service: Any, method: str, name: str,
            remote: Callable[..., object] | None = None) -> None:
    """`service.method(*args)` runs here and, after it, as `remote(*args)` everywhere else."""
    local = getattr(service, method)

    @functools.wraps(local)
    def wrapper(*args: Any) -> Any:
        result = local(*args)
        cluster.share(name, *args)
        return result

    setattr(service, method, wrapper)
    cluster.handle(name, remote or local)


def _forward(cluster: Cluster, service: Any, method: str, name: str, lease: str,
             decode: Callable[..., tuple[Any, ...]] = lambda *a: a) -> None:
    """`service.method(*args)` runs only on the process holding `lease`: elsewhere it is
    passed on to that process."""
    local = getattr(service, method)

    def wrapper(*args: Any) -> None:
        if cluster.holds(lease):
            local(*args)
        else:
            cluster.share(name, *args)

    def received(*args: Any) -> None:
        if cluster.holds(lease):
            local(*decode(*args))

    setattr(service, method, wrapper)
    cluster.handle(name, received)


def share_caches(hs: HomeServer, cluster: Cluster) -> None:
    # Access tokens: a logout, a password change (other devices logged out), an account
    # locked or deactivated forget the cached tokens everywhere.
    _mirror(cluster, hs.auth, "invalidate", "auth.invalidate")
    # Push rules, unread counts and the room members the push path keeps.
    _mirror(cluster, hs.push, "_forget_user", "push.forget_user")
    _mirror(cluster, hs.push, "_forget_counts", "push.forget_counts")
    _mirror(cluster, hs.push, "forget_room", "push.forget_room")

    pushers = hs.pushers
    set_pusher = pushers.set

    async def set_and_share(user_id: str, device_id: str | None, body: dict[str, Any]) -> None:
        await set_pusher(user_id, device_id, body)
        cluster.share("pushers.user", user_id)

    pushers.set = set_and_share  # type: ignore[method-assign]
    cluster.handle("pushers.user", pushers._users.add)

    presence = hs.presence
    set_state = presence.set_state

    async def set_state_and_share(user_id: str, *args: Any, **kw: Any) -> None:
        await set_state(user_id, *args, **kw)
        cluster.share("presence.forget", user_id)

    presence.set_state = set_state_and_share  # type: ignore[method-assign]
    cluster.handle("presence.forget", lambda user_id: presence._known.pop(user_id, None))

    typing = hs.typing
    set_typing = typing.set_typing

    def set_typing_and_share(room_id: str, user_id: str, on: bool, timeout_ms: int) -> None:
        set_typing(room_id, user_id, on, timeout_ms)
        cluster.share("typing", room_id, user_id, on, timeout_ms,
                      typing._room_serial.get(room_id, 0))

    def typing_elsewhere(room_id: str, user_id: str, on: bool, timeout_ms: int,
                         serial: int) -> None:
        # Every process wakes its own waiters: no need to pass the wake-up on again.
        publish, hs.notifier.publish = hs.notifier.publish, None
        try:
            set_typing(room_id, user_id, on, timeout_ms)
        finally:
            hs.notifier.publish = publish
        # The change has the same serial everywhere: a sync token from any process that
        # has shown it is past it on every other.
        if serial and room_id in typing._room_serial:
            typing._room_serial[room_id] = serial
            typing.serial = max(typing.serial, serial)

    typing.set_typing = set_typing_and_share  # type: ignore[method-assign,assignment]
    cluster.handle("typing", typing_elsewhere)

    if hs.config.federation.enabled:
        sender = hs.federation_sender
        forget_hosts = sender._forget_hosts

        def forget_hosts_everywhere(txn: Any, room_id: str) -> None:
            forget_hosts(txn, room_id)
            txn.call_after(lambda: cluster.share("fed.forget_hosts", room_id))

        sender._forget_hosts = forget_hosts_everywhere  # type: ignore[method-assign]
        cluster.handle("fed.forget_hosts", lambda room_id: sender._hosts.pop(room_id, None))
        # The queues are in the database; one process sends them.
        _forward(cluster, sender, "kick", "fed.kick", FEDERATION_LEASE)
        _forward(cluster, sender, "heard_from", "fed.heard_from", FEDERATION_LEASE)
        _forward(cluster, sender, "send_ephemeral", "fed.ephemeral", FEDERATION_LEASE,
                 lambda d, t, c, k: (d, t, c, tuple(k) if isinstance(k, list) else k))

        async def start_sender() -> None:
            sender.start()

        cluster.lease(FEDERATION_LEASE, start_sender)

    async def start_media_expiry() -> None:
        hs.run_in_background(_expire_media(hs))

    cluster.lease(MEDIA_LEASE, start_media_expiry)


async def _expire_media(hs: HomeServer) -> None:
    """Pending uploads (/create) never filled in time are dropped by one process."""
    import asyncio
    import logging

    while True:
        try:
            await hs.media.expire_unused()
        except Exception:
            logging.getLogger(__name__).exception("media expiry")
        await asyncio.sleep(MEDIA_EXPIRY_INTERVAL_S)
