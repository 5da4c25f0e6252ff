"""What another server may see of a room's history (client-server API "Room History
Visibility", applied to servers as Synapse's filter_events_for_server does): an event is
visible to a server unless the room's history_visibility at it is `invited` or `joined` and
none of the server's users was joined (or, for `invited`, invited) at that event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from veche.core.redaction import redact_event
from veche.core.room_versions import RoomVersion

HISTORY_VISIBILITY_KEY = ("m.room.history_visibility", "")


def visibility_of(history_visibility_event: Mapping[str, Any] | None) -> str:
    """The setting as the rules read it: missing or unknown is `shared`."""
    content = history_visibility_event.get("content") if history_visibility_event else None
    value = content.get("history_visibility") if isinstance(content, Mapping) else None
    return value if value in ("world_readable", "shared", "invited", "joined") else "shared"


def server_may_see(visibility: str, memberships: Iterable[object]) -> bool:
    """`memberships`: those of the asking server's users in the state at the event."""
    if visibility not in ("invited", "joined"):
        return True
    wanted = ("join", "invite") if visibility == "invited" else ("join",)
    return any(m in wanted for m in memberships)


def for_server(rv: RoomVersion, event: dict[str, Any], visible: bool) -> dict[str, Any]:
    """An event as served to a server: whole if visible, else redacted (the graph stays
    walkable, the content stays hidden)."""
    if visible:
        return event
    redacted = redact_event(event, rv)
    redacted.pop("unsigned", None)
    return redacted
