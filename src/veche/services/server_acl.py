"""Server ACLs on requests from other servers (server-server API "Server Access Control
Lists (ACLs)"): the one place a room's current `m.room.server_acl` is read and matched
against the asking server. Used by /send (per PDU, per room of an EDU), by the events and
state served (/event, /state, /backfill, ...) and by make_/send_ join, leave, knock and
invite; each refuses a denied server with 403 M_FORBIDDEN, or drops what it sent.

A room this server holds no state of has no ACL: everything is allowed (an invite to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from veche.core.server_acl import SERVER_ACL, server_allowed
from veche.errors import MatrixError, forbidden
from veche.storage import events as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

DENIED = "Server is banned from the room by its server ACL"


def origin_allowed(txn: Txn, room_id: str, origin: str) -> bool:
    """Whether the room's current server ACL lets `origin` take part in it."""
    acl = store.get_current_state(txn, room_id, [(SERVER_ACL, "")]).get((SERVER_ACL, ""))
    return server_allowed(origin, acl.get("content") if acl else None)


def denied(origin: str) -> MatrixError:
    return forbidden(f"{origin}: {DENIED}")


def check_origin(txn: Txn, room_id: str, origin: str) -> None:
    """403 M_FORBIDDEN unless the room's server ACL allows `origin`."""
    if not origin_allowed(txn, room_id, origin):
        raise denied(origin)


async def require_allowed(hs: HomeServer, origin: str, room_id: str) -> None:
    """`check_origin` in a read of its own, for handlers that do not hold a transaction."""
    await hs.db.run(check_origin, room_id, origin)
