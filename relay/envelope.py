"""The common envelope: the neutral model both adapters speak (docs/architecture.md §2).

Neither Discord's nor mirai's JSON appears here. Ids are plain ints:

* a **group** is a Discord guild text channel (or thread), ``id`` = channel snowflake;
* a **private** conversation is a DM, identified by the *other user's* snowflake (the DM channel id is
  a Discord detail the Discord adapter keeps to itself);
* a **message** has a Discord snowflake (``platform_id``) and a per-conversation Int32 ``local_id``
  allocated by the relay's store (mirai-api-http message ids are Int32 and unique per conversation).

Everything is frozen. Build changed copies with ``attrs.evolve``.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

import attrs

# --------------------------------------------------------------------------- identities

INT32_MAX = 2**31 - 1


class ConversationKind(enum.Enum):
    GROUP = "group"  #: a guild text channel / thread
    PRIVATE = "private"  #: a DM with one user


@attrs.frozen
class ConversationRef:
    """Where a message lives. ``id``: channel id for groups, the other user's id for DMs."""

    kind: ConversationKind
    id: int

    @classmethod
    def group(cls, channel_id: int) -> ConversationRef:
        return cls(ConversationKind.GROUP, channel_id)

    @classmethod
    def private(cls, user_id: int) -> ConversationRef:
        return cls(ConversationKind.PRIVATE, user_id)


@attrs.frozen(kw_only=True)
class MessageRef:
    """Points at one message. Either id may be unknown (``None``) until the store resolves it."""

    conversation: ConversationRef
    local_id: int | None = None  #: Int32 id from the store (what mirai frameworks see)
    platform_id: int | None = None  #: Discord message snowflake
    channel_id: int | None = None  #: Discord channel the message is in (the DM channel for DMs)


class Role(enum.Enum):
    """Standing in a group. Member: the member's. Group: the bot's (mirai ``Group.permission``)."""

    OWNER = "OWNER"
    ADMINISTRATOR = "ADMINISTRATOR"
    MEMBER = "MEMBER"


class Sex(enum.Enum):
    UNKNOWN = "UNKNOWN"
    MALE = "MALE"
    FEMALE = "FEMALE"


@attrs.frozen(kw_only=True)
class Group:
    id: int  #: channel id
    name: str
    bot_role: Role  #: the bot's standing in the guild
    guild_id: int = 0


@attrs.frozen(kw_only=True)
class Member:
    """A guild member seen from one group (channel)."""

    user_id: int
    display_name: str  #: nick → global_name → username
    role: Role
    group: Group
    joined_at: int = 0  #: epoch seconds, 0 when unknown
    last_spoke_at: int = 0  #: epoch seconds, 0 when unknown
    mute_remaining: int = 0  #: seconds of timeout left, 0 when not timed out
    special_title: str = ""
    is_bot: bool = False


@attrs.frozen(kw_only=True)
class User:
    """A Discord user outside any group (DM partner, friend, profile subject)."""

    id: int
    name: str  #: global_name → username
    username: str = ""
    is_bot: bool = False
    avatar_url: str = ""


@attrs.frozen(kw_only=True)
class Profile:
    nickname: str
    email: str = ""
    age: int = 0
    level: int = 0
    sign: str = ""
    sex: Sex = Sex.UNKNOWN


# --------------------------------------------------------------------------- message segments


@attrs.frozen
class Text:
    text: str


@attrs.frozen(kw_only=True)
class Mention:
    user_id: int
    display: str = ""


@attrs.frozen
class MentionAll:
    """``@everyone`` (or ``@here``, ``here=True``)."""

    here: bool = False


@attrs.frozen(kw_only=True)
class Emoji:
    """A custom Discord emoji (``<:name:id>``). Unicode emoji stay inside :class:`Text`."""

    id: int
    name: str
    animated: bool = False


@attrs.frozen(kw_only=True)
class Image:
    """An image. Inbound: ``url`` (+ ``id``, dims). Outbound: one of ``id``/``url``/``data``."""

    id: str | None = None  #: bridge-issued image id (mirai ``imageId``)
    url: str | None = None
    data: bytes | None = attrs.field(default=None, repr=False)
    filename: str = ""
    content_type: str = ""
    size: int = 0
    width: int = 0
    height: int = 0
    is_emoji: bool = False


@attrs.frozen(kw_only=True)
class Audio:
    id: str | None = None
    url: str | None = None
    data: bytes | None = attrs.field(default=None, repr=False)
    filename: str = ""
    content_type: str = ""
    size: int = 0
    duration: float = 0.0


@attrs.frozen(kw_only=True)
class File:
    """A file. Inbound: ``id``, ``name``, ``url``. Outbound: sent as an attachment from ``data`` when given, else
    from the attachment ``id`` names."""

    id: str
    name: str
    size: int = 0
    url: str | None = None
    data: bytes | None = attrs.field(default=None, repr=False)
    content_type: str = ""


@attrs.frozen(kw_only=True)
class Sticker:
    id: int
    name: str
    format: int = 1  #: Discord sticker format type: 1 PNG, 2 APNG, 3 LOTTIE, 4 GIF


@attrs.frozen(kw_only=True)
class RichContent:
    """An embed or card, carried as readable text (``text``) plus its raw-ish form for targets that can use it."""

    text: str
    title: str = ""
    url: str = ""


@attrs.frozen(kw_only=True)
class Unsupported:
    """Something the target side cannot express. ``fallback`` is readable text; it is never dropped."""

    fallback: str
    what: str = ""


Segment: TypeAlias = Text | Mention | MentionAll | Emoji | Image | Audio | File | Sticker | RichContent | Unsupported


@attrs.frozen(kw_only=True)
class Quote:
    """What a message replies to (mirai ``Quote``): the quoted message and, if known, its author and content."""

    ref: MessageRef
    author_id: int = 0
    origin: tuple[Segment, ...] = ()


@attrs.frozen(kw_only=True)
class Message:
    """A message seen on Discord."""

    conversation: ConversationRef
    channel_id: int  #: Discord channel (thread id for thread messages, DM channel id for DMs)
    platform_id: int  #: Discord message snowflake
    local_id: int = 0  #: Int32 id allocated by the relay store (0 = not yet allocated)
    time: int  #: epoch seconds
    sender: Member | User
    segments: tuple[Segment, ...]
    quote: Quote | None = None
    #: sent by the bot account itself (not through the bridge): mirai *SyncMessage events
    from_self: bool = False
    #: the group the message was posted in (None for DMs)
    group: Group | None = None


# --------------------------------------------------------------------------- events (Discord → frameworks)


@attrs.frozen(kw_only=True)
class MessageReceived:
    message: Message


@attrs.frozen(kw_only=True)
class MessageRecalled:
    ref: MessageRef
    author_id: int
    time: int  #: epoch seconds of the recall
    group: Group | None = None  #: None for DMs
    #: who deleted it: the author (a self-deletion) or a moderator; None = the bot (mirai's GroupRecallEvent null)
    operator: Member | None = None


@attrs.frozen(kw_only=True)
class MemberJoined:
    member: Member
    invitor: Member | None = None


@attrs.frozen(kw_only=True)
class MemberLeft:
    member: Member
    kicked: bool = False
    operator: Member | None = None


@attrs.frozen(kw_only=True)
class MemberMuted:
    member: Member
    duration: int  #: seconds
    operator: Member | None = None


@attrs.frozen(kw_only=True)
class MemberUnmuted:
    member: Member
    operator: Member | None = None


@attrs.frozen(kw_only=True)
class MemberNicknameChanged:
    member: Member
    old: str
    new: str


@attrs.frozen(kw_only=True)
class MemberRoleChanged:
    member: Member
    old: Role
    new: Role


@attrs.frozen(kw_only=True)
class GroupRenamed:
    group: Group
    old: str
    new: str
    operator: Member | None = None


@attrs.frozen(kw_only=True)
class GroupMuteAllChanged:
    group: Group
    old: bool
    new: bool
    operator: Member | None = None


@attrs.frozen(kw_only=True)
class BotRoleChanged:
    group: Group
    old: Role
    new: Role


@attrs.frozen(kw_only=True)
class BotJoinedGroup:
    group: Group


@attrs.frozen(kw_only=True)
class BotLeftGroup:
    group: Group
    kicked: bool = False
    operator: Member | None = None


class BotStatus(enum.Enum):
    ONLINE = "online"  #: READY on a fresh session
    OFFLINE_DROPPED = "dropped"  #: gateway connection lost
    RELOGIN = "relogin"  #: RESUMED / re-identified after a drop


@attrs.frozen(kw_only=True)
class BotStatusChanged:
    bot_id: int
    status: BotStatus


Event: TypeAlias = (
    MessageReceived
    | MessageRecalled
    | MemberJoined
    | MemberLeft
    | MemberMuted
    | MemberUnmuted
    | MemberNicknameChanged
    | MemberRoleChanged
    | GroupRenamed
    | GroupMuteAllChanged
    | BotRoleChanged
    | BotJoinedGroup
    | BotLeftGroup
    | BotStatusChanged
)


# --------------------------------------------------------------------------- commands (frameworks → Discord)


@attrs.frozen(kw_only=True)
class SendMessage:
    """Send to a group (channel) or a user (DM). ``via_group`` = the group a temp message came through."""

    conversation: ConversationRef
    segments: tuple[Segment, ...]
    quote: MessageRef | None = None
    via_group: int | None = None


@attrs.frozen(kw_only=True)
class RecallMessage:
    ref: MessageRef


@attrs.frozen(kw_only=True)
class GetMessage:
    ref: MessageRef


@attrs.frozen(kw_only=True)
class GetHistory:
    """Messages in a conversation between two epoch-second bounds (inclusive), oldest first."""

    conversation: ConversationRef
    time_start: int = 0
    time_end: int = 2**63 - 1
    limit: int = 100


@attrs.frozen
class ListFriends:
    pass


@attrs.frozen
class ListGroups:
    pass


@attrs.frozen(kw_only=True)
class ListMembers:
    group_id: int
    fresh: bool = False  #: bypass caches (mirai latestMemberList)
    user_ids: tuple[int, ...] = ()  #: empty = all


@attrs.frozen(kw_only=True)
class GetMember:
    group_id: int
    user_id: int


@attrs.frozen
class GetBotProfile:
    pass


@attrs.frozen(kw_only=True)
class GetUserProfile:
    user_id: int
    group_id: int | None = None  #: for member profiles


@attrs.frozen(kw_only=True)
class MuteMember:
    group_id: int
    user_id: int
    seconds: int


@attrs.frozen(kw_only=True)
class UnmuteMember:
    group_id: int
    user_id: int


@attrs.frozen(kw_only=True)
class KickMember:
    group_id: int
    user_id: int
    ban: bool = False
    reason: str = ""


@attrs.frozen(kw_only=True)
class LeaveGroup:
    group_id: int


@attrs.frozen(kw_only=True)
class SetMuteAll:
    group_id: int
    muted: bool


@attrs.frozen(kw_only=True)
class PinMessage:
    ref: MessageRef


@attrs.frozen(kw_only=True)
class GetGroupConfig:
    group_id: int


@attrs.frozen(kw_only=True)
class UpdateGroupConfig:
    """What to change (None: leave it); a value equal to the current one changes nothing."""

    group_id: int
    name: str | None = None
    mute_all: bool | None = None
    allow_member_invite: bool | None = None  #: members may create invites to the group


@attrs.frozen(kw_only=True)
class UpdateMember:
    group_id: int
    user_id: int
    nickname: str | None = None
    special_title: str | None = None


@attrs.frozen(kw_only=True)
class SetMemberAdmin:
    group_id: int
    user_id: int
    admin: bool


@attrs.frozen(kw_only=True)
class ListAnnouncements:
    group_id: int
    offset: int = 0
    size: int = 2**31 - 1


@attrs.frozen(kw_only=True)
class PublishAnnouncement:
    group_id: int
    content: str
    pinned: bool = False


@attrs.frozen(kw_only=True)
class DeleteAnnouncement:
    group_id: int
    announcement_id: str


@attrs.frozen(kw_only=True)
class DeleteFriend:
    user_id: int


Command: TypeAlias = (
    SendMessage
    | RecallMessage
    | GetMessage
    | GetHistory
    | ListFriends
    | ListGroups
    | ListMembers
    | GetMember
    | GetBotProfile
    | GetUserProfile
    | MuteMember
    | UnmuteMember
    | KickMember
    | LeaveGroup
    | SetMuteAll
    | PinMessage
    | GetGroupConfig
    | UpdateGroupConfig
    | UpdateMember
    | SetMemberAdmin
    | ListAnnouncements
    | PublishAnnouncement
    | DeleteAnnouncement
    | DeleteFriend
)


# --------------------------------------------------------------------------- results
# Failures are raised as relay.errors.CommandFailed, never returned.


@attrs.frozen
class Done:
    """The command succeeded and has nothing to return."""


@attrs.frozen(kw_only=True)
class MessageSent:
    """``ref`` is the first Discord message (long texts may be split into several: ``extra``)."""

    ref: MessageRef
    time: int
    extra: tuple[MessageRef, ...] = ()


@attrs.frozen(kw_only=True)
class MessageFound:
    message: Message


@attrs.frozen(kw_only=True)
class MessageList:
    messages: tuple[Message, ...]


@attrs.frozen(kw_only=True)
class FriendList:
    friends: tuple[User, ...]


@attrs.frozen(kw_only=True)
class GroupList:
    groups: tuple[Group, ...]


@attrs.frozen(kw_only=True)
class MemberList:
    members: tuple[Member, ...]


@attrs.frozen(kw_only=True)
class MemberFound:
    member: Member


@attrs.frozen(kw_only=True)
class ProfileFound:
    profile: Profile


@attrs.frozen(kw_only=True)
class GroupConfig:
    name: str
    mute_all: bool
    allow_member_invite: bool = False


@attrs.frozen(kw_only=True)
class Announcement:
    group: Group
    content: str
    sender_id: int
    id: str
    published_at: int  #: epoch seconds
    pinned: bool = True


@attrs.frozen(kw_only=True)
class AnnouncementList:
    announcements: tuple[Announcement, ...]


@attrs.frozen(kw_only=True)
class AnnouncementPublished:
    announcement: Announcement


Result: TypeAlias = (
    Done
    | MessageSent
    | MessageFound
    | MessageList
    | FriendList
    | GroupList
    | MemberList
    | MemberFound
    | ProfileFound
    | GroupConfig
    | AnnouncementList
    | AnnouncementPublished
)
