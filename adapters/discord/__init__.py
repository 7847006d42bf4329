"""Discord side: gateway (sans-I/O + trio shard), REST client + rate limiter, Discord ⇄ envelope."""
