#!/usr/bin/env bash
# Start dockerd in the background if no Docker engine answers; wait until it does (at most 30 s).
# Used by scripts/setup.sh and by the test that restarts the engine (tests/e2e/test_engine_restart.py).
set -euo pipefail
log() { printf '[setup] %s\n' "$*"; }  # progress on stdout; the failure below goes to stderr
LOG=/var/log/pushdock-dockerd.log

docker info >/dev/null 2>&1 && exit 0
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  # A systemd host: the engine is docker.io's own service (pushdock's unit requires docker.service).
  log "starting docker.service"
  systemctl start docker.service
else
  log "starting dockerd (log: $LOG)"
  mkdir -p "$(dirname "$LOG")"
  # In a session of its own (setsid): Ctrl-C on `make run`, or any signal to the process group that ran set-up,
  # never reaches the engine, so stopping `pushdock serve` never stops the apps.
  setsid --fork dockerd >>"$LOG" 2>&1 </dev/null
fi
for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done
log "dockerd did not start; see $LOG" >&2
exit 1
