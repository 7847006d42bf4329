"""Envelope events → mirai-api-http event objects and pushed frames (pure: no I/O, no clock, no trio).

:func:`encode_event_data` builds the ``data`` object of a pushed event exactly as mirai-api-http serializes it
(``type`` first, every DTO field present, nulls included; docs/mirai-api-http.md §2, §8, §9) and
:func:`encode_event_frame` the whole compact frame text that goes into the outbox. Every transport pushes the
same objects: a websocket wraps them in a frame, http polling and webhooks send them bare (docs/mirai-api-http.md §10,
§11.5). The contact shapes (:func:`encode_group`, :func:`encode_member`, :func:`encode_friend`) and
:func:`encode_message_event` are shared with the command results (:mod:`adapters.mirai.results_out`).

**Ids.** Every 64-bit id written here goes through ``ids.present`` (:class:`~relay.ports.IdPresenter`,
``[mirai] ids``; relay/ids.py): the Discord id as it is, or its small id. ``bot_id`` is the bot's id as
frameworks bind with it, already presented (:class:`adapters.mirai.handlers.PresentedIdentity`). The default
``ids`` is the identity: a caller serving ``ids = "small"`` must pass the bridge's map.
"""

from __future__ import annotations

from adapters.mirai import codec, fields
from adapters.mirai.chain import encode_message_chain
from relay import envelope as env
from relay.errors import LocalProtocolError
from relay.ids import SNOWFLAKE_IDS
from relay.ports import IdPresenter

__all__ = [
    "encode_event_data",
    "encode_event_frame",
    "encode_friend",
    "encode_group",
    "encode_member",
    "encode_message_event",
]


def encode_group(group: env.Group, ids: IdPresenter = SNOWFLAKE_IDS) -> dict[str, object]:
    """A ``Group`` contact (docs/mirai-api-http.md §8)."""
    # _value_, not .value, here and in encode_member: the enum property is a Python-level descriptor call (~0.3 µs),
    # and these two run for every relayed message
    return {"id": ids.present(group.id), "name": group.name, "permission": group.bot_role._value_}


def encode_member(member: env.Member, ids: IdPresenter = SNOWFLAKE_IDS) -> dict[str, object]:
    """A ``Member`` contact, with its group."""
    # docs/mirai-api-http.md §8: every field, ``active`` null outside ``memberInfo get``
    return {
        "id": ids.present(member.user_id),
        "memberName": member.display_name,
        "specialTitle": member.special_title,
        "permission": member.role._value_,
        "joinTimestamp": fields.clamp32(member.joined_at),
        "lastSpeakTimestamp": fields.clamp32(member.last_spoke_at),
        "muteTimeRemaining": fields.clamp32(member.mute_remaining),
        "group": encode_group(member.group, ids),
        "active": None,
    }


def _optional_member(member: env.Member | None, ids: IdPresenter) -> dict[str, object] | None:
    return None if member is None else encode_member(member, ids)


def encode_friend(user: env.User, ids: IdPresenter = SNOWFLAKE_IDS) -> dict[str, object]:
    """A ``Friend`` contact (Discord has no remarks)."""
    return {"id": ids.present(user.id), "nickname": user.name, "remark": ""}


def _message_group(message: env.Message) -> env.Group:
    if message.group is not None:
        return message.group
    if isinstance(message.sender, env.Member):
        return message.sender.group
    return env.Group(id=message.conversation.id, name="", bot_role=env.Role.MEMBER)


def _sender_as_member(message: env.Message) -> env.Member:
    sender = message.sender
    if isinstance(sender, env.Member):
        return sender
    # a webhook or an uncached author: a plain member of the group
    return env.Member(user_id=sender.id, display_name=sender.name, role=env.Role.MEMBER, group=_message_group(message))


def _sender_as_friend(sender: env.Member | env.User, ids: IdPresenter) -> dict[str, object]:
    if isinstance(sender, env.User):
        return encode_friend(sender, ids)
    return {"id": ids.present(sender.user_id), "nickname": sender.display_name, "remark": ""}


def encode_message_event(
    message: env.Message, *, bot_id: int, as_sync: bool = False, ids: IdPresenter = SNOWFLAKE_IDS
) -> dict[str, object]:
    """A message as a mirai message event (``GroupMessage``/``FriendMessage`` or their ``*SyncMessage``).

    ``as_sync`` is for pushed events of messages the bot account sent outside the bridge; the
    ``messageFromId``/``roamingMessages`` results always use the plain form with the bot as sender.
    """
    chain = encode_message_chain(message, bot_id=bot_id, ids=ids)
    if message.conversation.kind is env.ConversationKind.GROUP:
        if as_sync:
            return {
                "type": "GroupSyncMessage",
                "messageChain": chain,
                "subject": encode_group(_message_group(message), ids),
            }
        return {"type": "GroupMessage", "messageChain": chain, "sender": encode_member(_sender_as_member(message), ids)}
    if as_sync:
        # subject = the friend the bot wrote to; only the id is known here
        return {
            "type": "FriendSyncMessage",
            "messageChain": chain,
            "subject": {"id": ids.present(message.conversation.id), "nickname": "", "remark": ""},
        }
    return {"type": "FriendMessage", "messageChain": chain, "sender": _sender_as_friend(message.sender, ids)}


def _encode_recall(event: env.MessageRecalled, ids: IdPresenter) -> dict[str, object] | None:
    message_id = event.ref.local_id
    if message_id is None:
        # The message never got a mirai id (unknown to the store): no framework can have seen it.
        return None
    if event.group is not None:
        return {
            "type": "GroupRecallEvent",
            "authorId": ids.present(event.author_id),
            "messageId": message_id,
            "time": event.time,
            "group": encode_group(event.group, ids),
            "operator": _optional_member(event.operator, ids),
        }
    operator = event.operator.user_id if event.operator is not None else event.author_id
    return {
        "type": "FriendRecallEvent",
        "authorId": ids.present(event.author_id),
        "messageId": message_id,
        "time": event.time,
        "operator": ids.present(operator),
    }


_BOT_STATUS_TYPES = {
    env.BotStatus.ONLINE: "BotOnlineEvent",
    env.BotStatus.OFFLINE_DROPPED: "BotOfflineEventDropped",
    env.BotStatus.RELOGIN: "BotReloginEvent",
}


def encode_event_data(event: env.Event, *, bot_id: int, ids: IdPresenter = SNOWFLAKE_IDS) -> dict[str, object] | None:
    """The ``data`` object of the pushed frame for ``event``; ``None`` when mirai has nothing to say.

    ``bot_id`` is the qq presented to frameworks (``BotOnlineEvent.qq``, the receiver in private quotes).
    ``ids`` presents every other id (see the module docstring). ``None`` only for a recall of a message that
    never received a mirai id (resolve refs through the store first).
    """
    if isinstance(event, env.MessageReceived):
        message = event.message
        return encode_message_event(message, bot_id=bot_id, as_sync=message.from_self, ids=ids)
    if isinstance(event, env.MessageRecalled):
        return _encode_recall(event, ids)
    if isinstance(event, env.MemberJoined):
        return {
            "type": "MemberJoinEvent",
            "member": encode_member(event.member, ids),
            "invitor": _optional_member(event.invitor, ids),
        }
    if isinstance(event, env.MemberLeft):
        if event.kicked:
            return {
                "type": "MemberLeaveEventKick",
                "member": encode_member(event.member, ids),
                "operator": _optional_member(event.operator, ids),
            }
        return {"type": "MemberLeaveEventQuit", "member": encode_member(event.member, ids)}
    if isinstance(event, env.MemberMuted):
        return {
            "type": "MemberMuteEvent",
            "durationSeconds": fields.clamp32(event.duration),
            "member": encode_member(event.member, ids),
            "operator": _optional_member(event.operator, ids),
        }
    if isinstance(event, env.MemberUnmuted):
        return {
            "type": "MemberUnmuteEvent",
            "member": encode_member(event.member, ids),
            "operator": _optional_member(event.operator, ids),
        }
    if isinstance(event, env.MemberNicknameChanged):
        return {
            "type": "MemberCardChangeEvent",
            "origin": event.old,
            "current": event.new,
            "member": encode_member(event.member, ids),
        }
    if isinstance(event, env.MemberRoleChanged):
        return {
            "type": "MemberPermissionChangeEvent",
            "origin": event.old.value,
            "current": event.new.value,
            "member": encode_member(event.member, ids),
        }
    if isinstance(event, env.GroupRenamed):
        return {
            "type": "GroupNameChangeEvent",
            "origin": event.old,
            "current": event.new,
            "group": encode_group(event.group, ids),
            "operator": _optional_member(event.operator, ids),
        }
    if isinstance(event, env.GroupMuteAllChanged):
        return {
            "type": "GroupMuteAllEvent",
            "origin": event.old,
            "current": event.new,
            "group": encode_group(event.group, ids),
            "operator": _optional_member(event.operator, ids),
        }
    if isinstance(event, env.BotRoleChanged):
        return {
            "type": "BotGroupPermissionChangeEvent",
            "origin": event.old.value,
            "current": event.new.value,
            "group": encode_group(event.group, ids),
        }
    if isinstance(event, env.BotJoinedGroup):
        return {"type": "BotJoinGroupEvent", "group": encode_group(event.group, ids), "invitor": None}
    if isinstance(event, env.BotLeftGroup):
        if event.kicked:
            # mirai always names the operator; Discord's GUILD_DELETE does not, so it may be null (Ariadne: Optional)
            return {
                "type": "BotLeaveEventKick",
                "group": encode_group(event.group, ids),
                "operator": _optional_member(event.operator, ids),
            }
        return {"type": "BotLeaveEventActive", "group": encode_group(event.group, ids)}
    if isinstance(event, env.BotStatusChanged):
        # the qq frameworks bound to (config mirai.bot_id may differ from the Discord user id)
        return {"type": _BOT_STATUS_TYPES[event.status], "qq": bot_id or ids.present(event.bot_id)}
    raise LocalProtocolError(
        f"encode_event_data: no mirai event for {type(event).__name__}; extend adapters/mirai/events_out"
    )


def encode_event_frame(
    event: env.Event, *, bot_id: int, reserved_sync_id: str, ids: IdPresenter = SNOWFLAKE_IDS
) -> str | None:
    """The whole pushed frame ``{"syncId":"-1","data":{...}}`` as compact text; ``None`` = nothing to push."""
    data = encode_event_data(event, bot_id=bot_id, ids=ids)
    if data is None:
        return None
    return codec.encode_event(reserved_sync_id, data)
