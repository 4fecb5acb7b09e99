"""swarm: each process a Docker swarm service, spread over the swarm's nodes (swarm.md)."""
