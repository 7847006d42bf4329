"""mirai-api-http v2 side: frame codec + session (sans-I/O), reverse-ws client, mirai ⇄ envelope."""
