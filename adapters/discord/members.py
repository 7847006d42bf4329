"""Cached guild members: compact records, bounded per guild and overall, least recently used evicted first.

Pure: no trio, no clock, no I/O. Owned by :class:`adapters.discord.cache.DiscordCache`, which feeds it.

**What a member costs** (issue 18; measured with tracemalloc by ``tests/unit/test_discord_members.py``): about
``relay.config.CACHE_MEMBER_BYTES`` per cached member at the cap with churn. A member is ONE object (its user's
fields included, so ``member.user`` is the member itself) holding only what the mapping needs — id, username,
global name, bot flag, nick, roles, joined / timed-out-until / last-spoke times — plus its place in the two
orders below:

* the guild's table (``owner.members``, a plain dict kept in recency order: a touch re-inserts the key);
* one global doubly linked list through the records themselves (no key tuples, no second table).

Nothing of the parsed payload is kept alive: strings are replaced only when they changed (the payload's copies
die with it), role lists become shared tuples (:func:`intern_roles`), timestamps are floats.

**Why per-event cost stayed flat** (and did not before): a message from a member not seen lately touched eight
cold objects (member, user, two ordered-dict nodes and their neighbours, a fresh key tuple) spread over a heap of
100+ MB, and every cache miss allocated five of them; now it touches the record and its two list neighbours.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

from adapters.discord.snowflakes import parse_iso_time, to_int

#: distinct role sets remembered for sharing; past this the memo starts afresh (members keep their tuples)
MAX_ROLE_SETS: Final = 4096

_EMPTY: Final[tuple[int, ...]] = ()
_role_sets: dict[tuple[str, ...], tuple[int, ...]] = {}


def intern_roles(raw: list[Any]) -> tuple[int, ...]:
    """A member's role ids as a tuple shared by every member with the same roles."""
    if not raw:
        return _EMPTY
    key = tuple(raw)
    found = _role_sets.get(key)
    if found is None:
        if len(_role_sets) >= MAX_ROLE_SETS:
            _role_sets.clear()
        found = _role_sets[key] = tuple(map(to_int, raw))
    return found


class CachedUser:
    """A Discord user: what the mapping shows of one (docs/discord.md §6.3)."""

    __slots__ = ("global_name", "id", "is_bot", "username")

    def __init__(self, id: int, username: str = "", global_name: str = "", is_bot: bool = False) -> None:
        self.id = id
        self.username = username
        self.global_name = global_name
        self.is_bot = is_bot

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, username={self.username!r}, global_name={self.global_name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CachedUser) or type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def _key(self) -> tuple[object, ...]:
        return (self.id, self.username, self.global_name, self.is_bot)

    @property
    def name(self) -> str:
        """global_name → username (docs/discord.md §6.3)."""
        return self.global_name or self.username

    def update(self, data: Mapping[str, Any]) -> None:
        """Apply a (possibly partial) user object. An unchanged string keeps the cached object, so the payload's
        copy is not kept alive."""
        if "username" in data:
            username = data["username"] or ""
            if username != self.username:
                self.username = username
        if "global_name" in data:
            global_name = data["global_name"] or ""
            if global_name != self.global_name:
                self.global_name = global_name
        if "bot" in data:
            self.is_bot = bool(data["bot"])

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> CachedUser:
        user = cls(to_int(data.get("id")))
        user.update(data)
        return user


class CachedMember(CachedUser):
    """A guild member, user fields included (``member.user`` is the member itself)."""

    __slots__ = (
        "_newer",
        "_older",
        "_owner",
        "joined_at",
        "last_spoke_at",
        "nick",
        "role_memo",
        "roles",
        "timeout_until",
    )

    def __init__(
        self,
        id: int,
        username: str = "",
        global_name: str = "",
        is_bot: bool = False,
        *,
        nick: str = "",
        roles: tuple[int, ...] = _EMPTY,
        joined_at: float = 0.0,
        timeout_until: float = 0.0,
        last_spoke_at: float = 0.0,
    ) -> None:
        super().__init__(id, username, global_name, is_bot)
        self.nick = nick
        self.roles = roles
        self.joined_at = joined_at
        #: epoch seconds; 0 = never timed out
        self.timeout_until = timeout_until
        self.last_spoke_at = last_spoke_at
        #: the mapping's role for this member, remembered by adapters/discord/entities.py with the version of its
        #: guild's roles it was derived from; 0 = none. Reset here whenever ``roles`` changes
        self.role_memo = 0
        # the global recency list (see MemberTable); None while not in a table
        self._older: CachedMember | None = None
        self._newer: CachedMember | None = None
        self._owner: MemberOwner | None = None

    def __repr__(self) -> str:
        return f"CachedMember(id={self.id!r}, username={self.username!r}, nick={self.nick!r}, roles={self.roles!r})"

    def _key(self) -> tuple[object, ...]:
        return (*super()._key(), self.nick, self.roles, self.joined_at, self.timeout_until, self.last_spoke_at)

    @classmethod
    def of_user(cls, data: Mapping[str, Any]) -> CachedMember:
        """A member known only by its user object (an uncached author, a removed member)."""
        member = cls(to_int(data.get("id")))
        CachedUser.update(member, data)
        return member

    @property
    def user(self) -> CachedUser:
        return self

    @property
    def display_name(self) -> str:
        """Nick → global_name → username (docs/discord.md §6.3)."""
        return self.nick or self.global_name or self.username

    def copy(self) -> CachedMember:
        """A detached copy (not in any table): a snapshot to diff against, or to hand out."""
        return CachedMember(
            self.id,
            self.username,
            self.global_name,
            self.is_bot,
            nick=self.nick,
            roles=self.roles,
            joined_at=self.joined_at,
            timeout_until=self.timeout_until,
            last_spoke_at=self.last_spoke_at,
        )

    def _set_roles(self, roles: tuple[int, ...]) -> None:
        if roles is not self.roles:  # interned: the same roles are the same tuple (or, after a reset, only equal)
            self.roles = roles
            self.role_memo = 0

    def update(self, data: Mapping[str, Any]) -> None:
        """Apply a (possibly partial) member payload; fields absent from it are kept. Its ``user``, if any,
        updates the user fields."""
        user = data.get("user")
        if isinstance(user, dict):
            CachedUser.update(self, user)
        if "nick" in data:
            nick = data["nick"] or ""
            if nick != self.nick:
                self.nick = nick
        roles = data.get("roles")
        if isinstance(roles, list):
            self._set_roles(intern_roles(roles))
        if "joined_at" in data:
            self.joined_at = parse_iso_time(data["joined_at"])
        if "communication_disabled_until" in data:
            self.timeout_until = parse_iso_time(data["communication_disabled_until"])

    def refresh_from_message(self, member: Mapping[str, Any]) -> None:
        """MESSAGE_CREATE's partial member, on the hot path: a timeout is parsed only when there is one (the
        common message has none)."""
        if "nick" in member:
            nick = member["nick"] or ""
            if nick != self.nick:
                self.nick = nick
        roles = member.get("roles")
        if isinstance(roles, list):
            interned = intern_roles(roles)
            if interned is not self.roles:  # inlined _set_roles: the hot path
                self.roles = interned
                self.role_memo = 0
        joined = member.get("joined_at")
        if joined is not None:
            self.joined_at = parse_iso_time(joined)
        timeout = member.get("communication_disabled_until")
        if timeout is not None:
            self.timeout_until = parse_iso_time(timeout)
        elif self.timeout_until and "communication_disabled_until" in member:
            self.timeout_until = 0.0


class MemberOwner(Protocol):
    """What a guild offers the member table (``adapters.discord.cache.CachedGuild``)."""

    id: int
    #: user id → member, least recently used first
    members: dict[int, CachedMember]
    #: True while ``members`` holds the whole member list (cleared by an eviction)
    members_complete: bool
    #: members evicted from this guild so far (a whole-list fetch is complete only if none was meanwhile)
    members_evicted: int


class MemberTable:
    """Every guild's cached members under a per-guild and a global bound; the least recently used go first.

    Each guild's table is its ``members`` dict (recency order: a touch re-inserts the key), and one circular
    doubly linked list through the records orders all of them (``_sentinel._newer`` is the oldest).
    """

    def __init__(self, *, per_guild: int, total: int) -> None:
        self.per_guild = per_guild
        self.total = total
        self.count = 0
        self.evicted = 0
        sentinel = CachedMember(0)
        sentinel._older = sentinel._newer = sentinel
        self._sentinel = sentinel

    def add(self, owner: MemberOwner, member: CachedMember) -> None:
        """A member new to this guild's table: it becomes the newest; evicts past the bounds."""
        member._owner = owner
        owner.members[member.id] = member
        sentinel = self._sentinel
        newest = sentinel._older
        assert newest is not None
        member._older = newest
        member._newer = sentinel
        newest._newer = member
        sentinel._older = member
        self.count += 1
        if len(owner.members) > self.per_guild:
            self._evict(next(iter(owner.members.values())))
        while self.count > self.total:
            oldest = sentinel._newer
            assert oldest is not None and oldest is not sentinel
            self._evict(oldest)

    def touch(self, member: CachedMember) -> None:
        """``member`` (in a table) was used: it becomes the newest."""
        sentinel = self._sentinel
        newer = member._newer
        if newer is sentinel or newer is None:
            return  # already the newest (the same author again), or not in a table
        older = member._older
        assert older is not None and member._owner is not None
        older._newer = newer
        newer._older = older
        newest = sentinel._older
        assert newest is not None
        member._older = newest
        member._newer = sentinel
        newest._newer = member
        sentinel._older = member
        members = member._owner.members
        members[member.id] = members.pop(member.id)

    def remove(self, owner: MemberOwner, user_id: int) -> CachedMember | None:
        member = owner.members.pop(user_id, None)
        if member is not None:
            self._unlink(member)
        return member

    def drop_guild(self, owner: MemberOwner) -> None:
        """The guild is gone: its members leave the global order."""
        for member in owner.members.values():
            self._unlink(member)
        owner.members.clear()

    def oldest_first(self) -> Iterator[CachedMember]:
        """Every cached member, least recently used first (for tests and introspection)."""
        sentinel = self._sentinel
        member = sentinel._newer
        while member is not None and member is not sentinel:
            yield member
            member = member._newer

    def _evict(self, member: CachedMember) -> None:
        owner = member._owner
        assert owner is not None
        del owner.members[member.id]
        owner.members_complete = False
        owner.members_evicted += 1
        self.evicted += 1
        self._unlink(member)

    def _unlink(self, member: CachedMember) -> None:
        older, newer = member._older, member._newer
        if older is None or newer is None:
            return
        older._newer = newer
        newer._older = older
        member._older = member._newer = None
        member._owner = None
        self.count -= 1
