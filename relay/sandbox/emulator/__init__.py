"""An embedded Discord (REST v10, gateway v10, a persistent world) for the sandbox and the project's tests.

Pure parts: :mod:`.world` (state, seeding, lookups) and :mod:`.actions` (changes with their gateway events),
persisted by :mod:`.db`; :mod:`.endpoints` (Discord's REST rules) behind :mod:`.rest` (the request pipeline)
and :mod:`.ratelimits`; :mod:`.gateway` (sessions and connections) with :mod:`.intents`; :mod:`.payloads`,
:mod:`.snowflakes`, :mod:`.forms`, :mod:`.errors`. :mod:`.defaults` is the world a new sandbox
starts with. :mod:`.emulator` puts them together with the clocks and the control API; :mod:`.gateway_shell`
runs one upgraded gateway websocket (relay.wire) with the machine; :mod:`.server` serves it all on one
loopback port (relay.web).
"""
