"""Services: datastores (PostgreSQL, Redis) an app links to, each in a container of an image built locally.

A kind of service is a `Datastore` (pushdock/datastore.py) registered through the `register_services` trigger;
this package owns the records, credentials and links (model.py), the engine side (engine.py: image, network, volume,
container) and one command group per kind (commands.py). Each built-in kind is its own folder.
"""

BACKUPS = frozenset({"postgres", "redis"})  # kinds with backup/backups/restore (pushdock.datastore.Backupable)
