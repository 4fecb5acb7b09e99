"""caddy: the proxy and its JSON config renderer."""
