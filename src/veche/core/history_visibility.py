"""History visibility rules (client-server API, module "Room History Visibility", "Server
behaviour"): may a user see an event, given the room's state at that event?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VISIBILITIES = ("world_readable", "shared", "invited", "joined")
HISTORY_VISIBILITY = "m.room.history_visibility"


def effective(value: object) -> str:
    """A history_visibility value as the rules read it: unknown or missing is "shared"."""
    return value if isinstance(value, str) and value in VISIBILITIES else "shared"


def allowed(visibility: str, membership: str | None, joined_after: bool) -> bool:
    """The spec's five rules, for one history_visibility and one membership of the user."""
    if visibility == "world_readable" or membership == "join":
        return True
    if visibility == "shared" and joined_after:
        return True
    return visibility == "invited" and membership == "invite"


def may_see(
    user_id: str, event: Mapping[str, Any], visibility_before: str, membership_before: str | None,
    joined_after: bool,
) -> bool:
    """Whether `user_id` may see `event`, from the room's state just before it (its
    history_visibility, the user's membership) and whether the user joined the room at some
    point after it.

    A history_visibility event is visible if the setting before *or* after it allows; the
    user's own membership event if their membership before or after it does.
    """
    visibilities = [visibility_before]
    memberships = [membership_before]
    content = event.get("content")
    content = content if isinstance(content, Mapping) else {}
    if event.get("type") == HISTORY_VISIBILITY and event.get("state_key") == "":
        visibilities.append(effective(content.get("history_visibility")))
    elif event.get("type") == "m.room.member" and event.get("state_key") == user_id:
        membership = content.get("membership")
        memberships.append(membership if isinstance(membership, str) else None)
    return any(allowed(v, m, joined_after) for v in visibilities for m in memberships)
