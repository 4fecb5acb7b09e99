"""A Flask app served by gunicorn (tests/e2e/test_builders.py, bench/builds.py)."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return open(os.path.join(os.path.dirname(__file__), "body.txt")).read().strip()


@app.get("/env/<key>")
def env(key: str) -> str:
    return os.environ.get(key, "")
