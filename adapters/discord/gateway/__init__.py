"""The Discord gateway: sans-I/O protocol pieces (events, close codes, payloads, pacing, the session machine),
the trio shard that drives them, and resuming a session across a restart."""
