"""The sandbox: everything ``discord-mirai-relay sandbox`` runs besides the bridge itself, so that the bridge
can be tried without a Discord account or a bot framework (issue 17).

* ``relay/sandbox/emulator/`` — an embedded Discord: REST, gateway and a persistent world on one loopback port;
* ``relay/sandbox/demobot.py`` — a tiny built-in mirai bot (a framework's reverse-ws server), the trio shell;
  ``relay/sandbox/demobot_logic.py`` its pure half (frames and replies);
* ``relay/sandbox/chatpage.py`` — the chat page served by the emulator: its files (``static/``, package data),
  JSON API and live websocket; ``relay/sandbox/pageviews.py`` its pure views and loopback rules;
* ``relay/sandbox/settings.py`` — where the sandbox keeps its files and the bridge configuration it runs (pure);
* ``relay/sandbox/run.py`` — all of it and the bridge in one nursery, and the process entry point;
* ``relay/sandbox/command.py`` — the ``sandbox`` subcommand's arguments and configuration.
"""
