"""Envelope results and command failures → mirai-api-http response ``data`` objects (pure).

:func:`encode_result` builds the ``data`` of a successful command and :func:`encode_failure` the
``{"code", "msg"}`` of a :class:`~relay.errors.CommandFailed` (docs/mirai-api-http.md §5.2, §6.2). The objects are the
same on every transport: a websocket wraps them with the command's ``syncId``, http sends them as the body.
Every contact id goes through ``ids.present`` (``[mirai] ids``; see :mod:`adapters.mirai.events_out`).
"""

from __future__ import annotations

from typing import Final

from adapters.mirai import codec, events_out
from adapters.mirai.codec import StatusCode
from relay import envelope as env
from relay.errors import CommandFailed, FailureKind, LocalProtocolError
from relay.ids import SNOWFLAKE_IDS
from relay.ports import IdPresenter

__all__ = ["encode_failure", "encode_result"]

#: why a command failed → the mirai code it is answered with
_FAILURE_CODES: Final[dict[FailureKind, StatusCode]] = {
    FailureKind.NOT_FOUND: StatusCode.NO_ELEMENT,
    FailureKind.NO_PERMISSION: StatusCode.PERMISSION_DENIED,
    FailureKind.BOT_MUTED: StatusCode.BOT_MUTED,
    FailureKind.TOO_LONG: StatusCode.MESSAGE_TOO_LARGE,
    FailureKind.BAD_INPUT: StatusCode.INVALID_PARAMETER,
    FailureKind.UNSUPPORTED: StatusCode.NO_OPERATE_SUPPORT,
    FailureKind.TIMEOUT: StatusCode.INTERNAL_ERROR,
    FailureKind.INTERNAL: StatusCode.INTERNAL_ERROR,
}
#: the message a failure's reason follows, where it is not the code's standard one (mirai has none for 500)
_FAILURE_MESSAGES: Final = {FailureKind.TIMEOUT: "timed out"}


def _profile(profile: env.Profile) -> dict[str, object]:
    return {
        "nickname": profile.nickname,
        "email": profile.email,
        "age": profile.age,
        "level": profile.level,
        "sign": profile.sign,
        "sex": profile.sex.value,
    }


def _announcement(announcement: env.Announcement, ids: IdPresenter) -> dict[str, object]:
    return {
        "group": events_out.encode_group(announcement.group, ids),
        "content": announcement.content,
        "senderId": ids.present(announcement.sender_id),
        "fid": announcement.id,
        "allConfirmed": False,
        "confirmedMembersCount": 0,
        "publicationTime": announcement.published_at,
    }


def encode_result(
    command: str, result: env.Result, *, bot_id: int, ids: IdPresenter = SNOWFLAKE_IDS
) -> dict[str, object]:
    """The response ``data`` for a successful ``command`` (docs/mirai-api-http.md §6 shapes); ``bot_id`` is the bot's
    presented id, ``ids`` presents the others. Ids first seen here are durable once ``ids.deferred()`` around
    the call ends (the handler does that)."""
    if isinstance(result, env.Done):
        return codec.status_data(StatusCode.SUCCESS)
    if isinstance(result, env.MessageSent):
        # messageId top-level; -1 when no id exists (mirai's own convention, §6.2 Send)
        local_id = result.ref.local_id
        return codec.status_data(StatusCode.SUCCESS) | {"messageId": local_id if local_id is not None else -1}
    if isinstance(result, env.MessageFound):
        return codec.restful_data(events_out.encode_message_event(result.message, bot_id=bot_id, ids=ids))
    if isinstance(result, env.MessageList):
        return codec.restful_data([events_out.encode_message_event(m, bot_id=bot_id, ids=ids) for m in result.messages])
    if isinstance(result, env.FriendList):
        return codec.restful_data([events_out.encode_friend(u, ids) for u in result.friends])
    if isinstance(result, env.GroupList):
        return codec.restful_data([events_out.encode_group(g, ids) for g in result.groups])
    if isinstance(result, env.MemberList):
        return codec.restful_data([events_out.encode_member(m, ids) for m in result.members])
    if isinstance(result, env.MemberFound):
        # bare Member (memberInfo get); Discord has no QQ activity ranks, so `active` stays null
        return events_out.encode_member(result.member, ids)
    if isinstance(result, env.ProfileFound):
        return _profile(result.profile)
    if isinstance(result, env.GroupConfig):
        return {
            "name": result.name,
            "confessTalk": False,
            "allowMemberInvite": result.allow_member_invite,
            "autoApprove": False,
            "anonymousChat": False,
            "muteAll": result.mute_all,
        }
    if isinstance(result, env.AnnouncementList):
        return codec.restful_data([_announcement(a, ids) for a in result.announcements])
    if isinstance(result, env.AnnouncementPublished):
        return codec.restful_data(_announcement(result.announcement, ids))
    raise LocalProtocolError(f"{command}: no mirai shape for result {type(result).__name__}")


def encode_failure(failure: CommandFailed) -> dict[str, object]:
    """``CommandFailed`` → ``{"code": N, "msg": "<mirai standard>: <why>"}`` (docs/mirai-api-http.md §5.2)."""
    code = _FAILURE_CODES.get(failure.kind, StatusCode.INTERNAL_ERROR)
    standard = _FAILURE_MESSAGES.get(failure.kind, code.message)
    return codec.status_data(code, f"{standard}: {failure.message}" if failure.message else standard)
