"""The Discord REST API: the pure rate limiter and the httpx client on trio that obeys it."""
