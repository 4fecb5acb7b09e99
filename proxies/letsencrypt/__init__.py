"""letsencrypt:*: certificates from an ACME v2 CA (Let's Encrypt by default), answered over HTTP-01 by the proxy.

`client` talks ACME (certbot's `acme` library: no JWS of our own), `service` keeps the per-app state and
installs certificates through the same path as `certs:add`, `commands` is the click group.
"""
