"""nginx: the proxy, its config renderer and templates."""
