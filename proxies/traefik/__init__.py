"""traefik: the proxy, its config renderer, the vendored schema and steering during a swap."""
