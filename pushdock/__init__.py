"""pushdock: git push to deploy, with Dokku's architecture in Python."""

__version__ = "0.1.0"
