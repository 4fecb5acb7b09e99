#!/bin/sh
# An app's own ENTRYPOINT: says what it was given, then runs it.
echo "entrypoint got $# arguments: $*"
exec "$@"
