"""End-to-end encryption keys (spec: client-server API "End-to-End Encryption", key
management and cross-signing) and device list tracking.

A change to a user's devices or cross-signing keys is recorded once, as one row for the
user at a stream position. Who must hear of it (everyone sharing a room with them) is
worked out when someone syncs, and the wake-up goes to the user's rooms, which every
member's long-poll already waits on: nothing on the change path is done per member.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

import orjson
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from veche.errors import MatrixError, bad_json, invalid_param
from veche.server import register_stream_table
from veche.services import remote_keys
from veche.storage import e2e_keys as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer
    from veche.services.sync import SyncContext, SyncFinisher

register_stream_table("device_list_changes")

MAX_ONE_TIME_KEYS_PER_UPLOAD = 1000
MAX_STORED_ONE_TIME_KEYS = 10_000
MAX_QUERY_USERS = 10_000
MAX_CLAIM_DEVICES = 10_000
MAX_SIGNED_KEYS = 1000
CROSS_SIGNING_TYPES = {"master": "master", "self_signing": "self_signing",
                       "user_signing": "user_signing"}


def _key_id(full: str) -> tuple[str, str]:
    """'algorithm:key_id' split in two, or M_BAD_JSON."""
    alg, sep, kid = full.partition(":")
    if not sep or not alg or not kid:
        raise bad_json(f"Key ID {full[:64]!r} is not of the form algorithm:key_id")
    return alg, kid


def _ed25519_key(key: dict[str, Any]) -> tuple[str, str]:
    """(key ID, unpadded base64 public key) of a cross-signing key's single ed25519 key."""
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise bad_json("A cross-signing key must have exactly one key")
    (key_id, public), = keys.items()
    if not isinstance(key_id, str) or not key_id.startswith("ed25519:") or not isinstance(public, str):
        raise bad_json("A cross-signing key must be an ed25519 key")
    if key_id != f"ed25519:{public}":
        raise bad_json("A cross-signing key's ID must be its public key")
    return key_id, public


def _verify_key(key_id: str, public: str) -> Any:
    try:
        return decode_verify_key_bytes(key_id, decode_base64(public))
    except Exception:  # noqa: BLE001 - any malformed key is the client's error
        raise bad_json(f"Invalid public key {key_id[:80]!r}") from None


def _without_signatures(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


class E2eKeysService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        hs.sync.add_txn_provider(self._sync_provider)
        # (user, device) -> (access token hash, one-time key counts, unused fallback key
        # types) as /sync last read them; forgotten when an upload or a claim changes them.
        # Keyed by token too: a device deleted and made again under its ID has a new one.
        # Only where every upload and claim goes through this process.
        self._key_counts: dict[tuple[str, str], tuple[str, dict[str, int], list[str]]] = {}
        self._key_counts_generation = 0
        self._remember_key_counts = not hs.config.clustered

    # --- device lists ---------------------------------------------------------------------------
    async def notify_changed(self, user_id: str) -> None:
        """Wake the syncs of everyone sharing a room with the user (and the user's own), and
        tell the other servers in those rooms what changed (a local user's)."""
        rooms = await self.hs.db.run(store.joined_rooms, user_id)
        self.hs.notifier.notify([user_id, *rooms])
        await self.hs.device_lists.announce(user_id)

    async def mark_changed(self, user_id: str) -> None:
        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(store.mark_changed, [user_id], pos)
        await self.notify_changed(user_id)

    async def changes(self, user_id: str, since: int, upto: int) -> tuple[list[str], list[str]]:
        upto = min(upto, self.hs.stream.current)
        changed, left = await self.hs.db.run(store.device_list_delta, user_id, since, upto)
        return sorted(changed), sorted(left)

    def _sync_provider(self, txn: Txn, ctx: SyncContext) -> SyncFinisher:
        """One-time key counts and device list changes, read in the sync's transaction."""
        # No device list can have changed in a timeline-only window: no delta to read.
        since = None if ctx.since is None or ctx.timeline_only else ctx.since.stream
        key, token = (ctx.user_id, ctx.device_id), ctx.access_token_hash
        known = self._key_counts.get(key) if self._remember_key_counts and token else None
        if known is not None and known[0] == token:
            section = _e2ee_txn(txn, *key, since, ctx.upto.stream,
                                (dict(known[1]), list(known[2])))
        else:
            generation = self._key_counts_generation
            section = _e2ee_txn(txn, *key, since, ctx.upto.stream)
            if self._remember_key_counts and token:
                entry = (token, dict(section["device_one_time_keys_count"]),
                         list(section["device_unused_fallback_key_types"]))
                txn.call_after(lambda: self._remember_key_count(key, generation, entry))

        async def finish(ctx: SyncContext) -> bool:
            ctx.result.update(section)
            return bool(section["device_lists"]["changed"] or section["device_lists"]["left"])
        return finish

    def _remember_key_count(self, key: tuple[str, str], generation: int,
                            entry: tuple[str, dict[str, int], list[str]]) -> None:
        if generation != self._key_counts_generation:
            return  # an upload or claim since the read: it may be stale
        if len(self._key_counts) >= 50_000:
            self._key_counts.clear()
        self._key_counts[key] = entry

    def _forget_key_counts(self, user_id: str, device_id: str) -> None:
        self._key_counts_generation += 1
        self._key_counts.pop((user_id, device_id), None)

    async def sync_section(
        self, user_id: str, device_id: str, since: int | None, upto: int
    ) -> dict[str, Any]:
        """Sliding sync's e2ee extension: what /sync's provider gives, as one object."""
        return await self.hs.db.run(_e2ee_txn, user_id, device_id, since, upto)

    # --- upload ---------------------------------------------------------------------------------
    async def upload(self, user_id: str, device_id: str, body: dict[str, Any]) -> dict[str, int]:
        device_keys = body.get("device_keys")
        if device_keys is not None:
            check_device_keys(device_keys, user_id, device_id)
        otks = parse_keys(body.get("one_time_keys"), "one_time_keys")
        if len(otks) > MAX_ONE_TIME_KEYS_PER_UPLOAD:
            raise MatrixError(413, "M_TOO_LARGE",
                              f"At most {MAX_ONE_TIME_KEYS_PER_UPLOAD} one-time keys per upload")
        fallbacks = parse_keys(body.get("fallback_keys"), "fallback_keys")
        by_alg: dict[str, tuple[str, str]] = {}
        for alg, kid, raw in fallbacks:
            by_alg[alg] = (kid, raw)

        def run(txn: Txn, pos: int) -> tuple[dict[str, int], bool]:
            changed = False
            if device_keys is not None:
                current = store.get_device_keys(txn, user_id, device_id)
                if current is not None and current.get("keys") != device_keys.get("keys"):
                    raise invalid_param("This device already has different identity keys;"
                                        " log in as a new device to use new ones")
                if current != device_keys:
                    store.set_device_keys(txn, user_id, device_id, device_keys)
                    changed = True
            if otks:
                existing = store.get_one_time_keys(
                    txn, user_id, device_id, [(a, k) for a, k, _ in otks])
                new = []
                for alg, kid, raw in otks:
                    old = existing.get((alg, kid))
                    if old is None:
                        new.append((alg, kid, raw))
                        existing[(alg, kid)] = raw
                    elif orjson.loads(old) != orjson.loads(raw):
                        raise invalid_param(f"One-time key {alg}:{kid} already exists")
                if new:
                    stored = sum(store.count_one_time_keys(txn, user_id, device_id).values())
                    if stored + len(new) > MAX_STORED_ONE_TIME_KEYS:
                        raise MatrixError(400, "M_LIMIT_EXCEEDED",
                                          "Too many one-time keys stored for this device")
                    store.add_one_time_keys(txn, user_id, device_id, new)
            for alg, (kid, raw) in by_alg.items():
                store.set_fallback_key(txn, user_id, device_id, alg, kid, raw)
            if pos:
                # Even if a concurrent upload got there first: a position once taken must
                # be held by a row, or a restart could hand it out again.
                store.mark_changed(txn, [user_id], pos)
            txn.call_after(lambda: self._forget_key_counts(user_id, device_id))
            return store.count_one_time_keys(txn, user_id, device_id), changed

        # Most uploads repeat the device keys unchanged (or carry none): no stream position.
        if device_keys is not None and device_keys != await self.hs.db.run(
                store.get_device_keys, user_id, device_id):
            with self.hs.stream.get_next() as pos:
                counts, changed = await self.hs.db.run(run, pos)
        else:
            counts, changed = await self.hs.db.run(run, 0)
        if changed:
            await self.notify_changed(user_id)
        counts.setdefault("signed_curve25519", 0)
        return counts

    # --- query ----------------------------------------------------------------------------------
    async def query(self, requester: str, wanted: dict[str, list[str]], *,
                    local_only: bool = False, timeout_ms: Any = None) -> dict[str, Any]:
        """Keys of local users, and (unless `local_only`: a query from another server) of
        remote users, from their servers (services/remote_keys.py)."""
        if len(wanted) > MAX_QUERY_USERS:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_QUERY_USERS} users per query")
        local = [u for u in wanted if u.partition(":")[2] == self.hs.server_name]
        remote_wanted = {u: d for u, d in wanted.items()
                         if u.partition(":")[2] != self.hs.server_name and not local_only
                         and self.hs.config.federation.enabled}
        remote_task = asyncio.ensure_future(remote_keys.query(
            self.hs, remote_wanted, remote_keys.timeout_s(timeout_ms))) if remote_wanted else None

        def run(txn: Txn) -> dict[str, Any]:
            devices = {u: store.query_device_keys(txn, u, wanted[u] or None) for u in local}
            cross = store.get_cross_signing_keys(txn, local)
            sigs = store.get_signatures(txn, [*local, *remote_wanted])
            return {"devices": devices, "cross": cross, "sigs": sigs}

        data = await self.hs.db.run(run)
        sigs: dict[tuple[str, str], list[tuple[str, str, str]]] = data["sigs"]

        def merged(owner: str, key_id: str, key: dict[str, Any]) -> dict[str, Any]:
            extra = [s for s in sigs.get((owner, key_id), [])
                     if s[0] == owner or s[0] == requester]
            if not extra:
                return key
            key = dict(key)
            all_sigs = {u: dict(v) for u, v in (key.get("signatures") or {}).items()}
            for signer, signer_key, sig in extra:
                all_sigs.setdefault(signer, {})[signer_key] = sig
            key["signatures"] = all_sigs
            return key

        result: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {},
                                  "user_signing_keys": {}, "failures": {}}
        for uid in local:
            per_device = {}
            for dev, keys, name in data["devices"][uid]:
                keys = merged(uid, dev, keys)
                unsigned = dict(keys.get("unsigned") or {})
                if name:
                    unsigned["device_display_name"] = name
                per_device[dev] = {**keys, "unsigned": unsigned}
            result["device_keys"][uid] = per_device
            cross = data["cross"].get(uid, {})
            for key_type, out in (("master", "master_keys"), ("self_signing", "self_signing_keys")):
                if key_type in cross:
                    key = cross[key_type]
                    result[out][uid] = merged(uid, _ed25519_key(key)[1], key)
            if uid == requester and "user_signing" in cross:
                result["user_signing_keys"][uid] = cross["user_signing"]
        if remote_task is not None:
            remote = await remote_task
            result["failures"] = remote["failures"]
            result["device_keys"].update(remote["device_keys"])
            result["self_signing_keys"].update(remote["self_signing_keys"])
            for uid, key in remote["master_keys"].items():
                # The requester's own signature (user-signing key) on a remote master key.
                try:
                    result["master_keys"][uid] = merged(uid, _ed25519_key(key)[1], key)
                except MatrixError:
                    continue
        return result

    # --- claim ----------------------------------------------------------------------------------
    async def claim(self, wanted: dict[str, dict[str, str]], *, local_only: bool = False,
                    timeout_ms: Any = None) -> dict[str, Any]:
        pairs = [(u, d, alg) for u, devs in wanted.items()
                 if u.partition(":")[2] == self.hs.server_name for d, alg in devs.items()]
        remote_wanted = {u: d for u, d in wanted.items()
                         if u.partition(":")[2] != self.hs.server_name and d
                         and not local_only and self.hs.config.federation.enabled}
        if len(pairs) + sum(len(d) for d in remote_wanted.values()) > MAX_CLAIM_DEVICES:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_CLAIM_DEVICES} devices per claim")
        remote_task = asyncio.ensure_future(remote_keys.claim(
            self.hs, remote_wanted, remote_keys.timeout_s(timeout_ms))) if remote_wanted else None

        def run(txn: Txn) -> dict[str, dict[str, dict[str, Any]]]:
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for user_id, device_id, alg in pairs:
                got = store.claim_one_time_key(txn, user_id, device_id, alg)
                if got is None:
                    got = store.claim_fallback_key(txn, user_id, device_id, alg)
                if got is not None:
                    txn.call_after(functools.partial(self._forget_key_counts, user_id, device_id))
                    out.setdefault(user_id, {})[device_id] = {f"{alg}:{got[0]}": orjson.loads(got[1])}
            return out

        claimed = await self.hs.db.run(run)
        failures: dict[str, Any] = {}
        if remote_task is not None:
            remote = await remote_task
            claimed.update(remote["one_time_keys"])
            failures = remote["failures"]
        return {"one_time_keys": claimed, "failures": failures}

    # --- cross-signing --------------------------------------------------------------------------
    async def upload_cross_signing(self, user_id: str, body: dict[str, Any]) -> None:
        """Store new cross-signing keys; returns once stored. UIA is the caller's."""
        uploads = self._check_cross_signing(user_id, body, await self._cross_signing(user_id))

        def run(txn: Txn, pos: int) -> None:
            for key_type, (public, key) in uploads.items():
                store.set_cross_signing_key(txn, user_id, key_type, public, key)
            store.mark_changed(txn, [user_id], pos)

        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(run, pos)
        await self.notify_changed(user_id)

    async def cross_signing_upload_kind(self, user_id: str, body: dict[str, Any]) -> str:
        """"first" (no master key yet), "same" (only keys already there) or "replace".

        Only replacing needs user-interactive auth (spec, and Synapse): a lost response to a
        first upload can be retried without a challenge.
        """
        current = await self._cross_signing(user_id)
        if "master" not in current:
            return "first"
        for key_type in CROSS_SIGNING_TYPES:
            new = body.get(f"{key_type}_key")
            if new is not None and new != current.get(key_type):
                return "replace"
        return "same"

    async def _cross_signing(self, user_id: str) -> dict[str, dict[str, Any]]:
        keys = await self.hs.db.run(store.get_cross_signing_keys, [user_id])
        return keys.get(user_id, {})

    def _check_cross_signing(
        self, user_id: str, body: dict[str, Any], current: dict[str, dict[str, Any]]
    ) -> dict[str, tuple[str, dict[str, Any]]]:
        uploads: dict[str, tuple[str, dict[str, Any]]] = {}
        for key_type in CROSS_SIGNING_TYPES:
            key = body.get(f"{key_type}_key")
            if key is None:
                continue
            if not isinstance(key, dict):
                raise bad_json(f"{key_type}_key must be an object")
            if key.get("user_id") != user_id:
                raise invalid_param(f"{key_type}_key is for another user")
            usage = key.get("usage")
            if not isinstance(usage, list) or key_type not in usage:
                raise invalid_param(f"{key_type}_key must have usage {key_type}")
            if "signatures" in key and not isinstance(key["signatures"], dict):
                raise bad_json("signatures must be an object")
            key_id, public = _ed25519_key(key)
            _verify_key(key_id, public)
            uploads[key_type] = (public, key)
        if not uploads:
            return uploads
        master = uploads.get("master", (None, current.get("master")))[1]
        if master is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Upload a master key first")
        master_id, master_public = _ed25519_key(master)
        verify_key = _verify_key(master_id, master_public)
        for key_type in ("self_signing", "user_signing"):
            if key_type in uploads:
                try:
                    verify_signed_json(uploads[key_type][1], user_id, verify_key)
                except SignatureVerifyException:
                    raise MatrixError(400, "M_INVALID_SIGNATURE",
                                      f"{key_type}_key is not signed by the master key") from None
        return uploads

    # --- signatures -----------------------------------------------------------------------------
    async def upload_signatures(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        own_cross = await self._cross_signing(user_id)
        failures: dict[str, dict[str, dict[str, str]]] = {}
        rows: list[tuple[str, str, str, str, str]] = []
        targets: set[str] = set()

        def fail(uid: str, kid: str, errcode: str, error: str) -> None:
            failures.setdefault(uid, {})[kid] = {"errcode": errcode, "error": error}

        if sum(len(k) if isinstance(k, dict) else 1 for k in body.values()) > MAX_SIGNED_KEYS:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_SIGNED_KEYS} keys per upload")
        for target, keys in body.items():
            if not isinstance(keys, dict):
                raise bad_json("Signatures must be an object of key ID to signed key")
            for key_id, signed in keys.items():
                if not isinstance(signed, dict):
                    raise bad_json("A signed key must be an object")
                try:
                    found = await self._check_signature(user_id, own_cross, target, key_id, signed)
                except MatrixError as e:
                    fail(target, key_id, e.errcode, e.error)
                    continue
                rows.extend(found)
                targets.add(target)
        def save(txn: Txn, pos: int) -> None:
            store.add_signatures(txn, rows)
            store.mark_changed(txn, targets, pos)

        if rows:
            with self.hs.stream.get_next() as pos:
                await self.hs.db.run(save, pos)
            for target in sorted(targets):
                await self.notify_changed(target)
        return {"failures": failures}

    async def _check_signature(
        self, user_id: str, own_cross: dict[str, dict[str, Any]], target: str, key_id: str,
        signed: dict[str, Any],
    ) -> list[tuple[str, str, str, str, str]]:
        """The signature rows `signed` carries from `user_id` for target's key `key_id`, each
        verified; MatrixError (for the failures map) if the key or a signature is wrong."""
        sigs = signed.get("signatures")
        mine = sigs.get(user_id) if isinstance(sigs, dict) else None
        if not isinstance(mine, dict) or not mine:
            raise MatrixError(400, "M_MISSING_SIGNATURE", "No signature by the uploader")
        if target == user_id:
            device = await self.hs.db.run(store.get_device_keys, user_id, key_id)
            if device is not None:
                stored, signer = device, own_cross.get("self_signing")
                if signer is None:
                    raise MatrixError(400, "M_MISSING_SIGNATURE", "No self-signing key uploaded")
                signers = {_ed25519_key(signer)[0]: _ed25519_key(signer)[1]}
            else:
                master = own_cross.get("master")
                if master is None or _ed25519_key(master)[1] != key_id:
                    raise MatrixError(404, "M_NOT_FOUND", "Unknown key")
                stored = master
                # A master key is signed by the user's devices.
                devices = await self.hs.db.run(store.query_device_keys, user_id, None)
                signers = {}
                for _, dkeys, _ in devices:
                    for kid, public in (dkeys.get("keys") or {}).items():
                        if isinstance(kid, str) and kid.startswith("ed25519:") and isinstance(public, str):
                            signers[kid] = public
        else:
            target_cross = await self._cross_signing(target)
            master = target_cross.get("master")
            if master is None or _ed25519_key(master)[1] != key_id:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown key")
            usk = own_cross.get("user_signing")
            if usk is None:
                raise MatrixError(400, "M_MISSING_SIGNATURE", "No user-signing key uploaded")
            stored = master
            signers = {_ed25519_key(usk)[0]: _ed25519_key(usk)[1]}
        if _without_signatures(stored) != _without_signatures(signed):
            raise MatrixError(400, "M_INVALID_SIGNATURE", "The signed object differs from the key")
        rows = []
        for signer_key_id, signature in mine.items():
            if signer_key_id not in signers:
                continue
            if not isinstance(signature, str):
                raise bad_json("A signature must be a string")
            verify_key = _verify_key(signer_key_id, signers[signer_key_id])
            try:
                verify_signed_json({**_without_signatures(signed),
                                    "signatures": {user_id: {signer_key_id: signature}}},
                                   user_id, verify_key)
            except SignatureVerifyException:
                raise MatrixError(400, "M_INVALID_SIGNATURE", "Invalid signature") from None
            rows.append((target, key_id, user_id, signer_key_id, signature))
        if not rows:
            raise MatrixError(400, "M_MISSING_SIGNATURE", "No signature by the expected key")
        return rows


def check_device_keys(keys: Any, user_id: str, device_id: str) -> None:
    if not isinstance(keys, dict):
        raise bad_json("device_keys must be an object")
    if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        raise invalid_param("device_keys must be for the uploading user and device")
    algorithms = keys.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise bad_json("device_keys.algorithms must be a list of strings")
    dkeys = keys.get("keys")
    if not isinstance(dkeys, dict) or not all(isinstance(v, str) for v in dkeys.values()):
        raise bad_json("device_keys.keys must be an object of strings")
    for kid in dkeys:
        _key_id(kid)
    if not isinstance(keys.get("signatures"), dict):
        raise bad_json("device_keys.signatures must be an object")


def parse_keys(raw: Any, name: str) -> list[tuple[str, str, str]]:
    """[(algorithm, key_id, canonical JSON of the key)] of a one_time_keys/fallback_keys map."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise bad_json(f"{name} must be an object")
    out = []
    for full, key in raw.items():
        alg, kid = _key_id(full)
        if not isinstance(key, str | dict):
            raise bad_json(f"{name} values must be strings or objects")
        out.append((alg, kid, orjson.dumps(key, option=orjson.OPT_SORT_KEYS).decode()))
    return out


def _e2ee_txn(txn: Txn, user_id: str, device_id: str, since: int | None,
              upto: int, keys: tuple[dict[str, int], list[str]] | None = None) -> dict[str, Any]:
    """The device's one-time key counts, unused fallback key types (`keys`, if known) and,
    from `since`, the users whose device lists changed or who are no longer shared."""
    # Held: on PostgreSQL they go with the device list's first read.
    if keys is None:
        counts_later = store.count_one_time_keys_later(txn, user_id, device_id)
        fallbacks_later = store.unused_fallback_types_later(txn, user_id, device_id)
    changed, left = (store.device_list_delta(txn, user_id, since, upto) if since is not None
                     else (set(), set()))
    counts, fallbacks = keys if keys is not None else (counts_later(), fallbacks_later())
    counts.setdefault("signed_curve25519", 0)
    return {"device_one_time_keys_count": counts,
            "device_unused_fallback_key_types": fallbacks,
            "device_lists": {"changed": sorted(changed), "left": sorted(left)}}
