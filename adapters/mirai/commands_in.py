"""mirai commands in (pure): ``command``/``subCommand``/``content`` → an envelope command or a local answer.

:func:`decode_command` turns a command (docs/mirai-api-http.md §6) into an envelope :data:`relay.envelope.Command`, a
:class:`BridgeQuery` the handler answers from the bot identity, or a ready :class:`LocalAnswer` (errors,
unsupported commands, ``about``). It never raises for bad input.

Transport-independent: the three arguments are all a command is, whatever carried it — a websocket frame's
``command``/``subCommand``/``content`` (docs/mirai-api-http.md §3.4), or on http the route with ``/`` read as ``_``
(``/file/list`` → ``file_list``), ``get``/``update`` from the method of ``groupConfig``/``memberInfo``, and the
query parameters or the JSON body as ``content`` (§11.2). Query parameters are strings; the lenient readers of
:mod:`adapters.mirai.fields` accept them wherever a number or a boolean is expected (a repeated query key must
be given as a list).

**Ambiguous ``target``** (``recall``, ``messageFromId``, ``setEssence``, ``roamingMessages``: "friend id or group
id"): the decoded :class:`~relay.envelope.MessageRef` uses ``ConversationKind.GROUP`` as a placeholder. Discord
snowflakes never collide between channels and users, and the store keys messages by conversation id alone, so
resolving the ref through the store yields the real conversation (``MessageStore.lookup_local``;
``MessageStore.conversation(id)`` for ``roamingMessages``).

**Contact ids** (groups, members, friends: ``target``, ``group``, ``qq``, ``memberId``, ``memberIds``, ``At``)
are read through the :class:`~relay.ports.IdPresenter` given to :func:`decode_command` (``[mirai] ids``), so the
envelope command carries Discord ids; an id the bridge never presented is answered code 5.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Final

import attrs

from adapters.mirai import codec, fields
from adapters.mirai.chain import decode_chain
from adapters.mirai.codec import StatusCode
from relay import envelope as env
from relay.ids import SNOWFLAKE_IDS
from relay.ports import IdPresenter

__all__ = [
    "KNOWN_COMMANDS",
    "UNSUPPORTED_COMMANDS",
    "BridgeQuery",
    "LocalAnswer",
    "answer_query",
    "decode_command",
]


@attrs.frozen
class LocalAnswer:
    """The response ``data`` is known without asking Discord (errors, unsupported commands, ``about``)."""

    data: Mapping[str, object]
    #: the required field whose absence this answers, if that is the problem (http words it its own way, §11.3)
    missing: str | None = None

    @classmethod
    def error(cls, code: StatusCode, msg: str | None = None, *, missing: str | None = None) -> LocalAnswer:
        """``{code, msg}``; ``msg`` defaults to the code's standard message."""
        return cls(codec.status_data(code, msg), missing)


class BridgeQuery(enum.Enum):
    """Commands the mirai handler answers from the bot identity, not from Discord."""

    BOT_LIST = "botList"
    SESSION_INFO = "sessionInfo"


def answer_query(query: BridgeQuery, *, bot_id: int, bot_name: str, session_key: str) -> dict[str, object]:
    """``botList`` / ``sessionInfo`` in mirai-api-http's shapes (§6.2); ``botList`` is the answer
    :class:`~adapters.mirai.session.MiraiSession` gives before verify too (empty before Discord READY)."""
    if query is BridgeQuery.BOT_LIST:
        return codec.bot_list_data(bot_id)
    return codec.restful_data({"sessionKey": session_key, "qq": {"id": bot_id, "nickname": bot_name, "remark": ""}})


def _send(
    content: Mapping[str, object], ids: IdPresenter, conversation: env.ConversationRef, via_group: int | None
) -> env.SendMessage:
    segments = decode_chain(content.get("messageChain"), ids=ids)
    if not segments:
        raise fields.bad("messageChain", "has nothing Discord can send (it is empty or only Source/Quote)")
    quote_id = content.get("quote")
    quote = None
    if quote_id is not None:
        quote = env.MessageRef(conversation=conversation, local_id=fields.message_id(content, "quote"))
    return env.SendMessage(conversation=conversation, segments=tuple(segments), quote=quote, via_group=via_group)


def _ambiguous_ref(content: Mapping[str, object], ids: IdPresenter) -> env.MessageRef:
    # see the module docstring: kind GROUP is a placeholder the store resolves
    target = fields.contact(content, ids, "target", "group", "qq")
    return env.MessageRef(conversation=env.ConversationRef.group(target), local_id=fields.message_id(content))


def _group(content: Mapping[str, object], ids: IdPresenter) -> int:
    """The group a command is about: ``target``, or its synonym ``group``."""
    return fields.contact(content, ids, "target", "group")


def _member(content: Mapping[str, object], ids: IdPresenter) -> int:
    return fields.contact(content, ids, "memberId")


def _cmd_send_group(content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    return _send(content, ids, env.ConversationRef.group(_group(content, ids)), None)


def _cmd_send_friend(content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    return _send(content, ids, env.ConversationRef.private(fields.contact(content, ids, "target", "qq")), None)


def _cmd_send_temp(content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    user = fields.contact(content, ids, "qq", "target")
    group = fields.contact(content, ids, "group")
    return _send(content, ids, env.ConversationRef.private(user), group)


def _cmd_roaming(content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    start = fields.epoch(content, ("timeStart", "start"), 0)
    end = fields.epoch(content, ("timeEnd", "end"), fields.INT64_MAX)
    if end < start:
        raise fields.bad("timeEnd", f"({end}) is before timeStart ({start})")
    target = fields.optional_contact(content, ids, "target")
    if target is not None:
        conversation = env.ConversationRef.group(target)  # ambiguous placeholder, see module docstring
    elif (qq := fields.optional_contact(content, ids, "qq")) is not None:
        conversation = env.ConversationRef.private(qq)
    elif (group := fields.optional_contact(content, ids, "group")) is not None:
        conversation = env.ConversationRef.group(group)
    else:
        raise fields.missing("target", "(give target, qq or group)")
    return env.GetHistory(conversation=conversation, time_start=start, time_end=end)


def _cmd_latest_members(content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    raw_ids = content.get("memberIds")
    user_ids: tuple[int, ...] = ()
    if raw_ids is not None:
        if not isinstance(raw_ids, list):
            raise fields.bad("memberIds", "must be a list of ids or null")
        user_ids = tuple(
            fields.resolve(
                ids,
                fields.as_int(value, f"memberIds[{i}]", fields.INT64_MIN, fields.INT64_MAX, "integer id"),
                f"memberIds[{i}]",
            )
            for i, value in enumerate(raw_ids)
        )
    return env.ListMembers(group_id=_group(content, ids), fresh=True, user_ids=user_ids)


def _cmd_mute(content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    seconds = fields.int32(content, "time", 0)
    if seconds < 0:
        raise fields.bad("time", f"must not be negative ({seconds})")
    # the upper clamp (Discord: 28 days) is the Discord adapter's business
    return env.MuteMember(group_id=_group(content, ids), user_id=_member(content, ids), seconds=seconds)


def _cmd_kick(content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    return env.KickMember(
        group_id=_group(content, ids),
        user_id=_member(content, ids),
        ban=fields.boolean(content, "block", False),
        reason=fields.string(content, "msg", ""),
    )


def _cmd_group_config(sub: str, content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    group_id = _group(content, ids)
    if sub == "get":
        return env.GetGroupConfig(group_id=group_id)
    config = fields.mapping(content.get("config"), "config")
    for key, why in _NO_DISCORD_GROUP_SETTING.items():
        # groupConfig get reports these false: false asks for no change, true for one Discord cannot make
        if config.get(key) is not None and fields.boolean(config, key, None):
            raise fields.unsupported(f"{key} cannot be turned on: {why}")
    name = config.get("name")
    mute_all = config.get("muteAll")
    invite = config.get("allowMemberInvite")
    return env.UpdateGroupConfig(
        group_id=group_id,
        name=None if name is None else fields.string(config, "name", None),
        mute_all=None if mute_all is None else fields.boolean(config, "muteAll", None),
        allow_member_invite=None if invite is None else fields.boolean(config, "allowMemberInvite", None),
    )


#: groupConfig fields with no Discord setting (results_out answers them false): why, for the code-6 answer
_NO_DISCORD_GROUP_SETTING: Final[Mapping[str, str]] = {
    "confessTalk": "Discord channels have no confession chat (坦白说)",
    "autoApprove": "Discord has no join requests to approve (members join the server, not a channel)",
    "anonymousChat": "Discord has no anonymous chat",
}


def _cmd_member_info(sub: str, content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    group_id = _group(content, ids)
    user_id = _member(content, ids)
    if sub == "get":
        return env.GetMember(group_id=group_id, user_id=user_id)
    info = fields.mapping(content.get("info"), "info")
    name = info.get("name")
    title = info.get("specialTitle")
    return env.UpdateMember(
        group_id=group_id,
        user_id=user_id,
        nickname=None if name is None else fields.string(info, "name", None),
        special_title=None if title is None else fields.string(info, "specialTitle", None),
    )


def _cmd_anno_publish(content: Mapping[str, object], ids: IdPresenter) -> env.Command:
    for key in ("imageUrl", "imagePath", "imageBase64"):
        if content.get(key) not in (None, ""):
            raise fields.unsupported(
                f"anno_publish: announcements are Discord pins and cannot carry {key}; "
                "send the image as a message and pin it with setEssence"
            )
    return env.PublishAnnouncement(
        group_id=fields.contact(content, ids, "target", "group", "id"),
        content=fields.string(content, "content", None),
        pinned=fields.boolean(content, "pinned", False),
    )


_Decoder = Callable[[Mapping[str, object], IdPresenter], env.Command]

#: commands that read ``content`` (docs/mirai-api-http.md §6.1). Every id of a contact is read with fields.contact /
#: fields.resolve (through ``ids``): never with fields.long alone (test_mirai_commands_in checks it)
_CONTENT_COMMANDS: dict[str, _Decoder] = {
    "sendGroupMessage": _cmd_send_group,
    "sendFriendMessage": _cmd_send_friend,
    "sendTempMessage": _cmd_send_temp,
    "recall": lambda c, ids: env.RecallMessage(ref=_ambiguous_ref(c, ids)),
    "messageFromId": lambda c, ids: env.GetMessage(ref=_ambiguous_ref(c, ids)),
    "setEssence": lambda c, ids: env.PinMessage(ref=_ambiguous_ref(c, ids)),
    "roamingMessages": _cmd_roaming,
    "memberList": lambda c, ids: env.ListMembers(group_id=_group(c, ids)),
    "latestMemberList": _cmd_latest_members,
    "friendProfile": lambda c, ids: env.GetUserProfile(user_id=fields.contact(c, ids, "target", "qq")),
    "userProfile": lambda c, ids: env.GetUserProfile(user_id=fields.contact(c, ids, "target", "qq")),
    "memberProfile": lambda c, ids: env.GetUserProfile(user_id=_member(c, ids), group_id=_group(c, ids)),
    "mute": _cmd_mute,
    "unmute": lambda c, ids: env.UnmuteMember(group_id=_group(c, ids), user_id=_member(c, ids)),
    "kick": _cmd_kick,
    "quit": lambda c, ids: env.LeaveGroup(group_id=_group(c, ids)),
    "muteAll": lambda c, ids: env.SetMuteAll(group_id=_group(c, ids), muted=True),
    "unmuteAll": lambda c, ids: env.SetMuteAll(group_id=_group(c, ids), muted=False),
    "memberAdmin": lambda c, ids: env.SetMemberAdmin(
        group_id=_group(c, ids),
        user_id=_member(c, ids),
        admin=fields.boolean(c, "assign", None),
    ),
    "anno_list": lambda c, ids: env.ListAnnouncements(
        group_id=fields.contact(c, ids, "id", "target", "group"),
        offset=max(0, fields.int32(c, "offset", 0)),
        size=max(0, fields.int32(c, "size", env.INT32_MAX)),
    ),
    "anno_publish": _cmd_anno_publish,
    "anno_delete": lambda c, ids: env.DeleteAnnouncement(
        group_id=fields.contact(c, ids, "id", "target", "group"), announcement_id=fields.string(c, "fid", None)
    ),
    "deleteFriend": lambda c, ids: env.DeleteFriend(user_id=fields.contact(c, ids, "target", "qq")),
}

#: commands that ignore ``content``
_NO_CONTENT_COMMANDS: dict[str, env.Command] = {
    "friendList": env.ListFriends(),
    "groupList": env.ListGroups(),
    "botProfile": env.GetBotProfile(),
}

_SUBCOMMANDS: dict[str, Callable[[str, Mapping[str, object], IdPresenter], env.Command]] = {
    "groupConfig": _cmd_group_config,
    "memberInfo": _cmd_member_info,
}

_NO_FILES = "Discord channels have no group file system"
_UPLOAD = "uploads are not available over websocket (mirai-api-http answers 6 too); put url or base64 into the chain"

#: mirai commands with no Discord meaning → code 6 and why (never a fake success)
UNSUPPORTED_COMMANDS: dict[str, str] = {
    "sendNudge": "Discord has no nudge (戳一戳)",
    "sendOtherClientMessage": "a Discord bot has no other clients to message",
    "sendImageMessage": (
        "the bridge cannot return mirai image ids for it; send Image elements with url via "
        "sendGroupMessage/sendFriendMessage instead"
    ),
    "resp_newFriendRequestEvent": "Discord has no friend requests for bots (the bridge never pushes them)",
    "resp_memberJoinRequestEvent": "Discord has no join requests to answer (the bridge never pushes them)",
    "resp_botInvitedJoinGroupRequestEvent": "Discord bots are added by OAuth, not invited (the bridge never pushes it)",
    "file_list": _NO_FILES,
    "file_info": _NO_FILES,
    "file_mkdir": _NO_FILES,
    "file_delete": _NO_FILES,
    "file_move": _NO_FILES,
    "file_rename": _NO_FILES,
    "file_upload": _UPLOAD,
    "uploadImage": _UPLOAD,
    "uploadVoice": _UPLOAD,
    "uploadShortVideo": _UPLOAD,
    "cmd_execute": "there is no mirai console behind the bridge",
    "cmd_register": "there is no mirai console behind the bridge",
}

_ABOUT = LocalAnswer(codec.about_data())


#: every command name the bridge knows (answered, or refused as unsupported): the metrics count commands by name,
#: and a name outside this set (a framework's typo, or a command newer than the bridge) is not a label of its own
KNOWN_COMMANDS: frozenset[str] = frozenset(
    {"about", "botList", "sessionInfo", *_NO_CONTENT_COMMANDS, *_CONTENT_COMMANDS, *_SUBCOMMANDS, *UNSUPPORTED_COMMANDS}
)


def decode_command(
    command: str, sub_command: str | None, content: object, *, ids: IdPresenter = SNOWFLAKE_IDS
) -> env.Command | LocalAnswer | BridgeQuery:
    """A mirai command → envelope command, a :class:`BridgeQuery`, or a ready :class:`LocalAnswer`.

    Never raises for bad input: every problem becomes a ``LocalAnswer`` with a mirai code and a message
    naming the command and the field. ``ids`` maps every contact id back to its Discord id (an id it does not
    know: code 5).
    """
    if command == "about":
        return _ABOUT
    if command == "botList":
        return BridgeQuery.BOT_LIST
    if command == "sessionInfo":
        return BridgeQuery.SESSION_INFO
    try:
        if command in _NO_CONTENT_COMMANDS:
            return _NO_CONTENT_COMMANDS[command]
        decoder = _CONTENT_COMMANDS.get(command)
        if decoder is not None:
            return decoder(fields.mapping(content, "content"), ids)
        sub_decoder = _SUBCOMMANDS.get(command)
        if sub_decoder is not None:
            sub = sub_command.lower() if isinstance(sub_command, str) else ""
            if sub not in ("get", "update"):
                return LocalAnswer.error(
                    StatusCode.NO_OPERATE_SUPPORT,
                    f"{StatusCode.NO_OPERATE_SUPPORT.message}: {command} needs subCommand 'get' or 'update'",
                )
            return sub_decoder(sub, fields.mapping(content, "content"), ids)
        why = UNSUPPORTED_COMMANDS.get(command)
        if why is not None:
            return LocalAnswer.error(StatusCode.NO_OPERATE_SUPPORT, f"{command}: {why}")
        return LocalAnswer.error(StatusCode.NO_OPERATE_SUPPORT)
    except fields.BadContent as problem:
        return LocalAnswer.error(problem.code, f"{command}: {problem.msg}", missing=problem.missing)
