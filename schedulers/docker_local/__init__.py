"""docker-local: each process a container on this host's Docker engine."""
