"""Envelope SendMessage segments → the exact Discord request bodies; mute-all math; splitting (pure)."""

from __future__ import annotations

import pytest

from adapters.discord.cache import Overwrite
from adapters.discord.commands_out import (
    MAX_TIMEOUT_SECONDS,
    MUTE_ALL_DENY,
    command_failure,
    mute_all_overwrite,
    timeout_until,
)
from adapters.discord.markup import Rendered, allowed_mentions, build_message_bodies, render_segments, split_text
from adapters.discord.media import guess_content_type
from relay.config import LongMessageMode, MappingConfig
from relay.envelope import (
    Audio,
    Emoji,
    File,
    Image,
    Mention,
    MentionAll,
    RichContent,
    Sticker,
    Text,
    Unsupported,
)
from relay.errors import (
    CommandFailed,
    DiscordUnreachable,
    FailureKind,
    HTTPError,
    InvalidRequestGuard,
    MediaUnreachable,
    PayloadTooLarge,
)

CONFIG = MappingConfig()


def test_every_segment_kind_renders() -> None:
    image = Image(url="https://x/a.png")
    audio = Audio(data=b"OggS")
    file = File(id="1-2-3.pdf", name="a.pdf")
    rendered = render_segments(
        (
            Text("hi *not escaped* "),
            Mention(user_id=5, display="ignored"),
            Text(" "),
            Mention(user_id=5),
            Text(" "),
            Mention(user_id=6),
            MentionAll(),
            MentionAll(here=True),
            Emoji(id=1, name="wave"),
            Emoji(id=2, name="dance", animated=True),
            image,
            audio,
            file,
            Sticker(id=77, name="s"),
            RichContent(text="card body", title="Card", url="https://card"),
            Unsupported(fallback="[poke]"),
        ),
        allow_mention_all=False,
    )
    assert rendered == Rendered(
        content="hi *not escaped* <@5> <@5> <@6>@everyone@here<:wave:1><a:dance:2>[poke]",
        mention_users=(5, 6),
        mention_everyone=False,
        media=(image, audio, file),
        sticker_ids=(77,),
        embeds=({"description": "card body", "title": "Card", "url": "https://card"},),
    )
    assert render_segments((MentionAll(),), allow_mention_all=True).mention_everyone is True


def test_body_with_quote_mentions_uploads_stickers_embeds() -> None:
    rendered = render_segments(
        (Text("look "), Mention(user_id=5), Sticker(id=77, name="s"), RichContent(text="t")), allow_mention_all=False
    )
    bodies = build_message_bodies(rendered, quote_message_id=123, upload_names=["a.png", "b.ogg"], config=CONFIG)
    assert bodies == [
        {
            "allowed_mentions": {"parse": [], "users": ["5"], "replied_user": False},
            "content": "look <@5>",
            "message_reference": {"message_id": "123", "fail_if_not_exists": False},
            "attachments": [{"id": 0, "filename": "a.png"}, {"id": 1, "filename": "b.ogg"}],
            "sticker_ids": ["77"],
            "embeds": [{"description": "t"}],
        }
    ]


def test_everyone_allowed_body() -> None:
    rendered = render_segments((MentionAll(), Text(" hi")), allow_mention_all=True)
    (body,) = build_message_bodies(rendered, quote_message_id=None, upload_names=(), config=CONFIG)
    assert body == {
        "allowed_mentions": {"parse": ["everyone"], "users": [], "replied_user": False},
        "content": "@everyone hi",
    }


def test_long_text_split_puts_quote_first_and_uploads_last() -> None:
    text = ("word " * 500).strip()  # 2499 characters, no newlines
    rendered = render_segments((Text(text), Image(data=b"x")), allow_mention_all=False)
    bodies = build_message_bodies(rendered, quote_message_id=9, upload_names=["i.png"], config=CONFIG)
    assert len(bodies) == 2
    assert "message_reference" in bodies[0]
    assert "message_reference" not in bodies[1]
    assert "attachments" not in bodies[0]
    assert bodies[1]["attachments"] == [{"id": 0, "filename": "i.png"}]
    assert bodies[0]["content"] + " " + bodies[1]["content"] == text
    assert all(len(b["content"]) <= 2000 for b in bodies)


def test_refuse_and_empty_and_limits() -> None:
    refuse = MappingConfig(long_messages=LongMessageMode.REFUSE)
    long = render_segments((Text("x" * 2001),), allow_mention_all=False)
    with pytest.raises(CommandFailed) as caught:
        build_message_bodies(long, quote_message_id=None, upload_names=(), config=refuse)
    assert caught.value.kind == FailureKind.TOO_LONG
    with pytest.raises(CommandFailed) as caught:
        build_message_bodies(Rendered(content=""), quote_message_id=None, upload_names=(), config=CONFIG)
    assert caught.value.kind == FailureKind.BAD_INPUT
    with pytest.raises(CommandFailed):
        build_message_bodies(Rendered(content="x"), quote_message_id=None, upload_names=["a"] * 11, config=CONFIG)
    with pytest.raises(CommandFailed):
        build_message_bodies(
            Rendered(content="x", sticker_ids=(1, 2, 3, 4)), quote_message_id=None, upload_names=(), config=CONFIG
        )
    # an upload alone is a valid message (no content key)
    (body,) = build_message_bodies(Rendered(content=""), quote_message_id=None, upload_names=["a"], config=CONFIG)
    assert "content" not in body


def test_split_text_boundaries() -> None:
    assert split_text("short") == ["short"]
    assert split_text("a" * 2000) == ["a" * 2000]
    assert split_text("a" * 4500) == ["a" * 2000, "a" * 2000, "a" * 500]  # one huge word: hard cut
    lines = "\n".join(["b" * 1500, "c" * 1500])
    assert split_text(lines) == ["b" * 1500, "c" * 1500]
    mixed = "d" * 1000 + " " + "e" * 1500 + "\n" + "f" * 10
    assert split_text(mixed) == ["d" * 1000, "e" * 1500 + "\n" + "f" * 10]
    assert split_text("g" * 5 + " " + "h" * 10, limit=8) == ["ggggg", "hhhhhhhh", "hh"]


def test_allowed_mentions_cap() -> None:
    assert len(allowed_mentions(list(range(150)), False)["users"]) == 100


def test_mute_all_overwrite_math() -> None:
    send_messages, attach, embed = 1 << 11, 1 << 15, 1 << 14
    # no overwrite: mute creates the deny set; unmute of nothing stays nothing
    assert mute_all_overwrite(None, True) == (0, MUTE_ALL_DENY)
    assert mute_all_overwrite(None, False) is None
    # other bits are kept; an allow of SEND_MESSAGES would win over the deny, so it is taken out
    existing = Overwrite(1, 0, allow=embed | send_messages, deny=attach)
    assert mute_all_overwrite(existing, True) == (embed, attach | MUTE_ALL_DENY)
    assert mute_all_overwrite(Overwrite(1, 0, embed, attach | MUTE_ALL_DENY), False) == (embed, attach)
    # unmuting an overwrite that only held the mute bits: delete it
    assert mute_all_overwrite(Overwrite(1, 0, 0, MUTE_ALL_DENY), False) is None


def test_timeout_clamped_to_28_days() -> None:
    assert timeout_until(0, 60) == ("1970-01-01T00:01:00+00:00", 60)
    iso, applied = timeout_until(0, 30 * 86400)
    assert applied == MAX_TIMEOUT_SECONDS
    assert iso == "1970-01-29T00:00:00+00:00"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (HTTPError(404, 10003, "Unknown Channel"), FailureKind.NOT_FOUND),
        (HTTPError(404, 10004, "Unknown Guild"), FailureKind.NOT_FOUND),
        (HTTPError(404, 10007, "Unknown Member"), FailureKind.NOT_FOUND),
        (HTTPError(404, 10008, "Unknown Message"), FailureKind.NOT_FOUND),
        (HTTPError(404, 10013, "Unknown User"), FailureKind.NOT_FOUND),
        (HTTPError(403, 50001, "Missing Access"), FailureKind.NO_PERMISSION),
        (HTTPError(403, 50013, "Missing Permissions"), FailureKind.NO_PERMISSION),
        (HTTPError(403, 0, "Forbidden"), FailureKind.NO_PERMISSION),
        (HTTPError(400, 50035, "Invalid Form Body", field_errors=("content: too long",)), FailureKind.BAD_INPUT),
        (HTTPError(400, 0, "Bad"), FailureKind.BAD_INPUT),
        (HTTPError(500, 0, "oops"), FailureKind.INTERNAL),
        (HTTPError(429, 20016, "slowmode"), FailureKind.INTERNAL),
        (PayloadTooLarge("upload", 20, 10), FailureKind.BAD_INPUT),
        (DiscordUnreachable("GET", "/x", "timeout", attempts=3), FailureKind.TIMEOUT),
        (MediaUnreachable("cdn.example/a.png", "network error (ConnectError)"), FailureKind.TIMEOUT),
        (InvalidRequestGuard(9000, 10000, 600), FailureKind.INTERNAL),
    ],
)
def test_error_mapping(error: HTTPError, kind: FailureKind) -> None:
    failure = command_failure(error)
    assert failure.kind == kind
    assert str(error) in failure.message


def test_error_mapping_bot_muted_and_field_errors_kept() -> None:
    assert command_failure(HTTPError(403, 50013, "Missing Permissions"), bot_timed_out=True).kind == (
        FailureKind.BOT_MUTED
    )
    failure = command_failure(HTTPError(400, 50035, "Invalid Form Body", field_errors=("content: too long",)))
    assert "content: too long" in failure.message


def test_content_type_guess() -> None:
    assert guess_content_type("", b"\x89PNG\r\n") == "image/png"
    assert guess_content_type("", b"\xff\xd8\xff") == "image/jpeg"
    assert guess_content_type("", b"GIF89a") == "image/gif"
    assert guess_content_type("", b"RIFF0000WEBP") == "image/webp"
    assert guess_content_type("v.amr", b"") == "audio/amr"
    assert guess_content_type("x.unknown", b"") == "application/octet-stream"
