"""The chat page's views and rules (relay/sandbox/pageviews.py), as pure calls over an emulated world."""

from __future__ import annotations

import pytest

from relay.sandbox import pageviews as views
from relay.sandbox.emulator import defaults
from relay.sandbox.emulator.emulator import Emulator
from relay.sandbox.emulator.ratelimits import FAKE_EPOCH
from relay.sandbox.emulator.rest import RecordedRequest
from relay.sandbox.emulator.world import Upload
from relay.web.models import RequestRejected, Response


def sandbox() -> Emulator:
    em = Emulator(epoch=FAKE_EPOCH, seed_default=True)
    em.bound(4321)
    return em


def test_the_state_lists_text_channels_members_and_who_could_join() -> None:
    em = sandbox()
    state = views.state_view(em.world)
    assert state["guild"] == {"id": str(defaults.GUILD), "name": "Sandbox"}
    assert [c["name"] for c in state["channels"]] == ["general", "random", "bot-commands"]
    names = [m["name"] for m in state["members"]]
    assert names[0] == "relay-bot"  # the bot first, then by name
    assert names[1:] == ["Alice", "Bob", "Caz", "dave"]  # Carol's nickname is Caz
    carol = next(m for m in state["members"] if m["username"] == "carol")
    assert carol == {
        "id": str(defaults.CAROL),
        "name": "Caz",
        "username": "carol",
        "nick": "Caz",
        "bot": False,
        "roles": [],
        "timeout_until": None,
    }
    assert [u["username"] for u in state["outside"]] == ["erin"]
    assert state["roles"][str(defaults.MODERATORS)] == "Moderators"


def test_messages_resolve_names_mentions_replies_images_and_system_lines() -> None:
    em = sandbox()
    asked = em.actions.post_message(defaults.GENERAL, f"ping <@{defaults.CAROL}>", author_id=defaults.BOB)
    upload = Upload("cat.png", b"\x89PNG", "image/png")
    answer = em.actions.post_message(
        defaults.GENERAL, "here", author_id=defaults.ALICE, reply_to=int(asked["id"]), uploads=[upload]
    )
    em.actions.member_join(defaults.GUILD, defaults.ERIN)
    shown = views.messages_view(em.world, defaults.GENERAL)
    welcome, ping, reply, joined = shown
    assert welcome["author"] == "Alice" and welcome["reply"] is None
    assert ping["names"] == {str(defaults.CAROL): "Caz"}
    assert reply["reply"] == {
        "id": asked["id"],
        "deleted": False,
        "author": "Bob",
        "content": f"ping <@{defaults.CAROL}>",
        "attachments": 0,
    }
    assert reply["names"] == {str(defaults.CAROL): "Caz"}  # the quote's mention renders too
    assert reply["attachments"] == [
        {"url": answer["attachments"][0]["url"], "filename": "cat.png", "image": True},
    ]
    assert (joined["author"], joined["system"]) == ("Erin", "joined the server.")

    em.actions.delete_message(defaults.GENERAL, int(asked["id"]), actor_id=defaults.BOB)
    after = views.messages_view(em.world, defaults.GENERAL)
    assert after[1]["reply"] == {"id": asked["id"], "deleted": True}
    assert len(views.messages_view(em.world, defaults.GENERAL, limit=2)) == 2


def record(headers: dict[str, str], *, json: object = None, path: str = "/channels/1/messages") -> RecordedRequest:
    return RecordedRequest(
        method="POST",
        path=path,
        query={},
        headers=headers,
        body=b"",
        json=json,
        parts=(),
        time=0.0,
        route="POST /channels/{channel_id}/messages",
        status=200,
    )


def test_the_side_panel_shows_the_bridges_requests_only() -> None:
    assert views.is_bridge_request(record({"authorization": "Bot x"}))
    assert views.is_bridge_request(record({"user-agent": "DiscordBot (https://example.invalid, 1.0)"}))
    assert not views.is_bridge_request(record({"user-agent": "Mozilla/5.0"}))  # the page loading an image


@pytest.mark.parametrize(
    ("response", "result"),
    [
        (Response.json({"id": "42", "content": "hi"}), "id 42"),
        (Response.json([{}, {}]), "2 items"),
        (Response(204), "no content"),
        (Response.json({"message": "Missing Permissions", "code": 50013}, 403), "50013 Missing Permissions"),
        (
            Response.json({"message": "You are being rate limited.", "retry_after": 1.5, "global": False}, 429),
            "You are being rate limited., retry after 1.5 s",
        ),
        (Response(200, (("content-type", "image/png"),), b"\x89PNG"), "image/png, 4 bytes"),
        (None, "connection dropped without an answer"),
    ],
)
def test_a_panel_entry_says_what_was_sent_and_what_came_back(response: Response | None, result: str) -> None:
    entry = views.request_entry(7, record({"authorization": "Bot x"}, json={"content": "hi"}), response, wall_time=5.0)
    assert entry["seq"] == 7 and entry["time"] == 5.0
    assert (entry["method"], entry["path"], entry["route"]) == (
        "POST",
        "/channels/1/messages",
        "POST /channels/{channel_id}/messages",
    )
    assert entry["sent"] == '{"content":"hi"}'
    assert entry["status"] == (response.status if response is not None else None)
    assert entry["result"] == result


def test_what_the_page_asks_is_checked() -> None:
    assert views.int_field({"author_id": "12"}, "author_id") == 12
    assert views.int_field({"author_id": 12}, "author_id") == 12
    assert views.optional_int({}, "reply_to") is None
    for bad in ({"author_id": "x"}, {"author_id": True}, {"author_id": 1.5}, {}):
        with pytest.raises(RequestRejected) as info:
            views.int_field(bad, "author_id")
        assert info.value.status == 422
    with pytest.raises(RequestRejected, match="longer than 3"):
        views.text_field({"content": "abcd"}, "content", limit=3)
    with pytest.raises(RequestRejected, match="must be a string"):
        views.text_field({"content": 5}, "content", limit=3)


def test_only_members_not_timed_out_can_post() -> None:
    em = sandbox()
    now = em.wall_time()
    views.check_can_post(em.world, defaults.GUILD, defaults.BOB, now)
    with pytest.raises(RequestRejected, match="Erin is not a member"):
        views.check_can_post(em.world, defaults.GUILD, defaults.ERIN, now)
    em.actions.update_member(defaults.GUILD, defaults.BOB, communication_disabled_until="2099-01-01T00:00:00+00:00")
    with pytest.raises(RequestRejected, match="Bob is timed out until 2099"):
        views.check_can_post(em.world, defaults.GUILD, defaults.BOB, now)
    em.actions.update_member(defaults.GUILD, defaults.BOB, communication_disabled_until="2001-01-01T00:00:00Z")
    views.check_can_post(em.world, defaults.GUILD, defaults.BOB, now)  # an expired timeout


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1:8765", False),
        ("localhost:8765", False),
        ("LOCALHOST", False),
        ("[::1]:8765", False),
        ("127.1.2.3:80", False),
        (None, True),
        ("", True),
        ("evil.example:8765", True),  # DNS rebinding: a public name pointed at 127.0.0.1
        ("192.168.1.2:8765", True),
        ("[fe80::1]:8765", True),
    ],
)
def test_page_requests_must_name_a_loopback_host(host: str | None, refused: bool) -> None:
    assert (views.host_problem(host) is not None) is refused


def test_changes_must_come_from_the_pages_own_origin() -> None:
    assert views.origin_problem(None, "127.0.0.1:8765") is None  # curl, scripts
    assert views.origin_problem("http://127.0.0.1:8765", "127.0.0.1:8765") is None
    assert views.origin_problem("http://evil.example", "127.0.0.1:8765") is not None
    assert views.origin_problem("http://127.0.0.1:9999", "127.0.0.1:8765") is not None
    assert views.origin_problem("null", "127.0.0.1:8765") is not None
