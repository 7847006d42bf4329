"""[[mirai.webhook.destinations]] and [[robots]]: every key checked with its TOML path, secrets only from the
environment, never shown."""

from __future__ import annotations

from typing import Any

import pytest

from relay.config import RobotSignature, WebhookSigning
from relay.configload import parse_config, secrets_of
from relay.errors import ConfigError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {"DISCORD_TOKEN": "t0ken", "MIRAI_VERIFY_KEY": "k3y", "HOOK": SECRET, "ROBOT": "SECrobot", "HOME": "/h"}


def problems(mapping: dict[str, Any], env: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(mapping, source="bridge.toml", env=env)
    return list(caught.value.problems)


def test_webhook_destinations_and_robots_load_with_their_secrets() -> None:
    config = parse_config(
        {
            "mirai": {
                "webhook": {
                    "extra_headers": {"Authorization": "Bearer common"},
                    "destinations": [
                        {
                            "url": "localhost:9999/x",
                            "signing": "standard",
                            "secret_env": "HOOK",
                            "events": ["GroupMessage"],
                        },
                        {"name": "b", "url": "https://example.test/h", "batch_max_events": 50},
                    ],
                }
            },
            "robots": [{"name": "ci", "group": "123456789012345678", "secret_env": "ROBOT", "signature": "timestamp"}],
        },
        source="bridge.toml",
        env=ENV,
    )
    first, second = config.mirai.webhook.destinations
    assert (first.url, first.signing, first.secret, first.events) == (
        "http://localhost:9999/x",
        WebhookSigning.STANDARD,
        SECRET,
        ("GroupMessage",),
    )
    assert (second.label, second.batch_max_events, second.timeout, second.retries) == ("b", 50, 5.0, 3)
    (robot,) = config.robots
    assert (robot.group, robot.secret, robot.signature, robot.shown_name) == (
        123456789012345678,
        "SECrobot",
        RobotSignature.TIMESTAMP,
        "ci",
    )
    assert {SECRET, "SECrobot", "Bearer common"} <= set(secrets_of(config))
    assert SECRET not in repr(config) and "SECrobot" not in repr(config) and "Bearer common" not in repr(config)


def test_bad_values_are_reported_with_their_paths_and_secrets_are_never_echoed() -> None:
    found = problems(
        {
            "mirai": {
                "webhook": {
                    "destinations": [
                        {"url": "ftp://x", "events": ["GroupMesage"], "secret": "in-the-file", "retries": -1},
                        {"signing": "sha1"},
                    ]
                }
            },
            "robots": [{"name": "a b", "group": 0, "secret": "robot-in-file"}, {"group": 5}],
        }
    )
    text = "\n".join(found)
    assert "in-the-file" not in text and "robot-in-file" not in text
    hook, robot = "mirai.webhook.destinations", "robots"
    no_secret = (
        "expected no secret in the file, got a string; put it in an environment variable and name that in secret_env"
    )
    assert found == [
        f'{hook}[0].url: expected an http:// or https:// URL such as "http://127.0.0.1:9999/events", got "ftp://x"',
        f"{hook}[0].retries: expected an integer 0–100, got -1",
        f'{hook}[0].events: expected mirai event type names, got an array with unknown "GroupMesage" '
        '(did you mean "GroupMessage"?)',
        f"{hook}[0].secret: {no_secret}",
        f'{hook}[1].url: missing; give the URL events are POSTed to, e.g. url = "http://127.0.0.1:9999/events"',
        f'{hook}[1].signing: expected one of "none", "standard", "x-signature", got "sha1"',
        f'{robot}[0].name: expected a name of 1–64 letters, digits, "-" or "_" (it is the URL path: /robots/<name>), '
        'got "a b"',
        f"{robot}[0].group: expected a channel id (the mirai group id: a positive integer), got 0",
        f"{robot}[0].secret: {no_secret}",
        f'{robot}[1].name: missing; give the robot a name; it posts at /robots/<name>, e.g. name = "ci"',
    ]


def test_secrets_must_be_named_and_set_and_standard_ones_well_formed() -> None:
    found = problems(
        {
            "mirai": {
                "webhook": {
                    "destinations": [
                        {"url": "http://a/", "signing": "x-signature"},
                        {"url": "http://b/", "signing": "standard", "secret_env": "ROBOT"},
                        {"url": "http://c/", "signing": "x-signature", "secret_env": "UNSET"},
                    ]
                }
            },
            "robots": [{"name": "ci", "group": 5}, {"name": "ci", "group": 6, "signature": "none"}],
        }
    )
    assert found[0].startswith('mirai.webhook.destinations[0].secret_env: missing; signing = "x-signature" needs')
    assert found[1].startswith("robots[0].secret_env: missing; name the environment variable")
    assert found[2] == 'robots[1].name: same name "ci" as robots[0]'
    assert found[3].startswith(
        "mirai.webhook.destinations[1].secret: the environment variable ROBOT must hold a Standard Webhooks secret"
    )
    assert found[4] == "mirai.webhook.destinations[2].secret: missing; set the environment variable UNSET to the secret"
    assert len(found) == 5


def test_webhook_destinations_alone_are_enough() -> None:
    config = parse_config({"mirai": {"webhook": {"destinations": [{"url": "http://a/"}]}}}, source="b", env=ENV)
    assert config.mirai.reverse_ws.destinations == ()
    assert problems({}, ENV)[0].startswith("mirai.reverse_ws.destinations: missing; add at least one")


def test_check_summarises_webhooks_and_robots() -> None:
    from relay.check import summary_lines
    from relay.egress import DiscordEgress

    config = parse_config(
        {
            "mirai": {
                "webhook": {"destinations": [{"name": "ci-hook", "url": "http://a/", "events": ["GroupMessage"]}]}
            },
            "robots": [{"name": "ci", "group": 5, "display_name": "CI", "signature": "none"}],
        },
        source="b",
        env=ENV,
    )
    lines = summary_lines("b", config, ENV, DiscordEgress.from_config(config.discord, ENV))
    assert "    - ci-hook: GroupMessage, signing none" in lines
    assert "    - /robots/ci → channel 5 as 'CI', signature none" in lines
