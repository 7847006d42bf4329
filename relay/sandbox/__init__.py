"""The sandbox: everything ``discord-mirai-relay sandbox`` runs besides the bridge itself, so that the bridge
can be tried without a Discord account or a bot framework (issue 17).

* ``relay/sandbox/emulator/`` — an embedded Discord: REST, gateway and a persistent world on one loopback port;
* ``relay/sandbox/demobot.py`` — a tiny built-in mirai bot (a framework's reverse-ws server), the trio shell;
  ``relay/sandbox/demobot_logic.py`` its pure half (frames and replies).
"""
