"""Room aliases and the published room directory (client-server API "Room aliases",
"Listing rooms in the room directory", "Room discovery"), served to other servers too
(server-server API "Public Room Directory") and asked of them for a client
(`/publicRooms?server=`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from veche.core.identifiers import InvalidIdentifier, parse_server_name
from veche.core.numbers import is_safe_int, parse_count
from veche.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from veche.federation.errors import FederationDenied, FederationError, HttpResponseError, path
from veche.services.rooms import check_alias, check_room_id
from veche.storage import events as ev_store
from veche.storage import rooms as store

if TYPE_CHECKING:
    from veche.server import HomeServer


class DirectoryService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def resolve_alias(self, alias: str) -> dict[str, Any]:
        check_alias(alias)
        row = await self.hs.db.run(store.get_alias, alias)
        if row is None:
            raise not_found("Room alias not found")
        return {"room_id": row[0], "servers": [self.hs.server_name]}

    async def create_alias(self, user_id: str, alias: str, room_id: Any) -> None:
        check_alias(alias)
        if not isinstance(room_id, str):
            raise bad_json("room_id must be a string")
        check_room_id(room_id)
        if not alias.endswith(":" + self.hs.server_name):
            raise invalid_param("Room alias must belong to this server")
        exists = await self.hs.db.run(store.room_exists, room_id)
        if not exists:
            raise not_found("Room not found")
        await self.hs.rooms.require_joined(room_id, user_id)
        if not await self.hs.db.run(store.create_alias, alias, room_id, user_id):
            raise MatrixError(409, "M_UNKNOWN", "Room alias already exists")

    async def delete_alias(self, user_id: str, alias: str) -> None:
        """The alias's creator, a server admin or a member who may set the canonical alias
        deletes it."""
        check_alias(alias)
        row = await self.hs.db.run(store.get_alias, alias)
        if row is None:
            raise not_found("Room alias not found")
        room_id, creator = row
        if creator != user_id and not await self.hs.db.run(store.is_admin, user_id):
            m = await self.hs.rooms.membership(room_id, user_id)
            if m is None or m[0] != "join" or not await self.hs.rooms.can_send_state(
                room_id, user_id, "m.room.canonical_alias"
            ):
                raise forbidden("You may not delete this alias")
        await self.hs.db.run(store.delete_alias, alias)
        await self._drop_from_canonical_alias(room_id, user_id, alias)

    async def _drop_from_canonical_alias(self, room_id: str, user_id: str, alias: str) -> None:
        state = await self.hs.db.run(
            ev_store.get_current_state, room_id, [("m.room.canonical_alias", "")]
        )
        ev = state.get(("m.room.canonical_alias", ""))
        if ev is None:
            return
        content = dict(ev.get("content") or {})
        alt = content.get("alt_aliases")
        changed = False
        if content.get("alias") == alias:
            content.pop("alias")
            changed = True
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if changed:
            try:
                await self.hs.events.send(room_id, user_id, "m.room.canonical_alias", content, "")
            except MatrixError:
                pass

    async def room_aliases(self, room_id: str, user_id: str) -> list[str]:
        await self.hs.rooms.room_version(room_id)
        m = await self.hs.rooms.membership(room_id, user_id)
        if (m is None or m[0] != "join") and not await self.hs.visibility.world_readable(room_id):
            raise forbidden("You are not in this room")
        return await self.hs.db.run(store.aliases_for_room, room_id)

    async def get_visibility(self, room_id: str) -> str:
        check_room_id(room_id)
        public = await self.hs.db.run(store.is_public, room_id)
        if public is None:
            raise not_found("Room not found")
        return "public" if public else "private"

    async def set_visibility(self, user_id: str, room_id: str, visibility: Any) -> None:
        if not isinstance(visibility, str):
            raise bad_json("visibility must be a string")
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be public or private")
        await self.get_visibility(room_id)
        await self.hs.rooms.require_joined(room_id, user_id)
        if not await self.hs.rooms.can_send_state(room_id, user_id, "m.room.canonical_alias"):
            raise forbidden("You may not change this room's directory visibility")
        await self.hs.db.run(store.set_public, room_id, visibility == "public")

    async def public_rooms(self, query: RoomsQuery, *, for_federation: bool = False) -> dict[str, Any]:
        """This server's published rooms, filtered and paginated (`since`: "o<offset>").
        Other servers are not shown rooms that do not federate."""
        if query.include_all_networks and query.third_party_instance_id is not None:
            raise invalid_param("include_all_networks cannot be used with third_party_instance_id")
        entries = await self.hs.db.run_read(store.public_room_entries, for_federation)
        total = len(entries)
        if query.third_party_instance_id is not None:
            entries = []  # no application service lists rooms under a network here
        if query.search:
            needle = query.search.casefold()
            entries = [e for e in entries if any(
                needle in str(e.get(k, "")).casefold()
                for k in ("name", "topic", "canonical_alias", "room_id")
            )]
        if query.room_types is not None:
            entries = [e for e in entries if e.get("room_type") in query.room_types]
        offset = 0
        since, limit = query.since, query.limit
        if since is not None:
            parsed = parse_count(since[1:]) if since.startswith("o") else None
            if parsed is None:
                raise invalid_param("Invalid since token")
            offset = parsed
        end = len(entries) if limit is None else offset + limit
        out: dict[str, Any] = {"chunk": entries[offset:end], "total_room_count_estimate": total}
        if end < len(entries):
            out["next_batch"] = f"o{end}"
        if offset > 0:
            out["prev_batch"] = f"o{max(0, offset - (limit or offset))}"
        return out

    async def remote_public_rooms(self, server: str, query: RoomsQuery,
                                  user_id: str) -> dict[str, Any]:
        """Another server's published rooms, asked over federation (POST when filtering,
        as Synapse does): 403 when federation with it is not allowed or it refuses, 502
        when it cannot be reached or answers anything else."""
        try:
            parse_server_name(server)
        except InvalidIdentifier:
            raise invalid_param(f"Invalid server name: {server}") from None
        # Every call costs a request to another server: bounded per user, like a search.
        self.hs.ratelimiter.check("search", f"publicRooms:{user_id}")
        asked = {k: v for k, v in (("limit", query.limit), ("since", query.since),
                                   ("third_party_instance_id", query.third_party_instance_id))
                 if v is not None}
        client = self.hs.federation_client
        try:
            if query.search is None and query.room_types is None:
                params = {**asked, "include_all_networks": str(query.include_all_networks).lower()}
                answer = await client.get_json(
                    server, path(FEDERATION_PUBLIC_ROOMS, query=params), timeout_s=30)
            else:
                flt = {k: v for k, v in (("generic_search_term", query.search),
                                         ("room_types", query.room_types)) if v is not None}
                body = {**asked, "include_all_networks": query.include_all_networks, "filter": flt}
                answer = await client.post_json(server, FEDERATION_PUBLIC_ROOMS, body, timeout_s=30)
        except FederationDenied as e:
            raise forbidden(f"Cannot list the rooms of {server}: {e}") from None
        except HttpResponseError as e:
            if e.status == 403:
                raise forbidden(f"{server} does not show its room directory") from None
            raise MatrixError(502, "M_UNKNOWN", f"Failed to fetch the room list: {e}") from None
        except FederationError as e:
            raise MatrixError(502, "M_UNKNOWN", f"Failed to fetch the room list: {e}") from None
        return _public_rooms_answer(answer)


FEDERATION_PUBLIC_ROOMS = "/_matrix/federation/v1/publicRooms"


@dataclass(frozen=True)
class RoomsQuery:
    """What a publicRooms request asks (client-server and server-server alike)."""

    limit: int | None = None  # None: no limit
    since: str | None = None
    search: str | None = None
    room_types: list[Any] | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


def _public_rooms_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """Another server's answer, as the spec shapes it: entries without the required fields
    (or of the wrong types) are left out, so a client gets only what it can use."""
    chunk = answer.get("chunk")
    entries = [e for e in (chunk if isinstance(chunk, list) else []) if isinstance(e, dict)
               and isinstance(e.get("room_id"), str) and is_safe_int(e.get("num_joined_members"))
               and isinstance(e.get("world_readable"), bool)
               and isinstance(e.get("guest_can_join"), bool)]
    out: dict[str, Any] = {"chunk": entries}
    for key in ("next_batch", "prev_batch"):
        if isinstance(answer.get(key), str):
            out[key] = answer[key]
    if is_safe_int(answer.get("total_room_count_estimate")):
        out["total_room_count_estimate"] = answer["total_room_count_estimate"]
    return out
