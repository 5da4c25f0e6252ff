"""Which member events a device has been sent, per room, for lazy-loading members.

A member event is left out of a later /sync only if the client has it, and the server knows
that only once the client comes back with the `next_batch` of the answer that carried it: a
long-poll answer the client never received (the connection dropped, the app was killed) must
not count. So what was sent is remembered per answer, under its `next_batch`, and a request
starts from what the answer named by its `since` had sent. A `since` no longer remembered
(evicted, or before a restart) starts from nothing: the members are sent again, redundant
but never missing.
"""

from __future__ import annotations

from collections import OrderedDict

Sent = dict[str, frozenset[str]]  # room ID -> user IDs whose member event the device has

MAX_DEVICES = 10_000
# Answers remembered per device: a client retrying or running two requests needs a few.
PER_DEVICE = 4


class LazyMembers:
    def __init__(self) -> None:
        self._devices: OrderedDict[tuple[str, str], OrderedDict[str, Sent]] = OrderedDict()

    def known(self, user_id: str, device_id: str, since: str | None) -> Sent:
        """What the device has, if it received the answer whose `next_batch` was `since`."""
        if since is None:
            return {}
        answers = self._devices.get((user_id, device_id))
        if answers is None:
            return {}
        return answers.get(since, {})

    def record(self, user_id: str, device_id: str, next_batch: str, base: Sent,
               added: dict[str, set[str]]) -> None:
        """Remember that the answer `next_batch` sent the members `added` on top of `base`."""
        sent = dict(base)
        for room_id, users in added.items():
            sent[room_id] = sent.get(room_id, frozenset()) | users
        key = (user_id, device_id)
        answers = self._devices.setdefault(key, OrderedDict())
        self._devices.move_to_end(key)
        while len(self._devices) > MAX_DEVICES:
            self._devices.popitem(last=False)
        earlier = answers.get(next_batch)
        if earlier is not None:
            # Two answers with one token (the client sent two requests): it holds one of
            # them, so only what both sent is surely known.
            sent = {r: users & earlier[r] for r, users in sent.items() if r in earlier}
        answers[next_batch] = sent
        answers.move_to_end(next_batch)
        while len(answers) > PER_DEVICE:
            answers.popitem(last=False)
