#!/usr/bin/env bash
# Idempotent set-up for pushdock on Debian 12 (as root): Debian packages when missing, a .venv with the
# project, a Docker engine when none answers, and the local stack image when absent.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }  # progress on stdout: a successful set-up prints nothing on stderr

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v git >/dev/null 2>&1 || need+=(git)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
# bench/push_to_live.py measures C git push over OpenSSH (a private sshd, never the system's) as its floor
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v pigz >/dev/null 2>&1 || need+=(pigz)
# the letsencrypt tests issue certificates from a local ACME server (pebble + pebble-challtestsrv)
command -v pebble >/dev/null 2>&1 || need+=(pebble)
# the tests' FROM-scratch images carry the host's static busybox; systemd-analyze verifies the service unit
[ -x /bin/busybox ] || need+=(busybox-static)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# the multinode tests: a second dockerd in a network namespace (ip, nsenter), images through Debian's registry (TLS)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# stable upstream addresses: an nftables map per data dir (proxies/nftmap.py); iptables is the fallback
command -v nft >/dev/null 2>&1 || need+=(nftables)
# the dashboard's browser tests drive a headless chromium through selenium
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  # Debian starts services on install; pushdock runs its own nginx, so keep the system one from
  # grabbing port 80. Only add a policy-rc.d if the machine has none, and remove it afterwards.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# Python dependencies: exactly uv.lock (hashes included), installed by a pinned uv (scripts/uv-requirements.txt).
# uv never downloads a Python of its own here: the machine's python3 is the one.
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1
if [ ! -x .uv/bin/uv ] || [ scripts/uv-requirements.txt -nt .uv/.installed ]; then
  log "installing uv (scripts/uv-requirements.txt)"
  python3 -m venv .uv
  # -qq: errors only (a machine's pip.conf may name extra indexes that are absent: a warning each)
  .uv/bin/pip install -qq --require-hashes -r scripts/uv-requirements.txt
  touch .uv/.installed
fi
if [ ! -x .venv/bin/pushdock ] || [ uv.lock -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  log "installing the locked Python dependencies into .venv (uv.lock)"
  .uv/bin/uv sync --quiet --frozen --extra dev --python python3
  touch .venv/.installed
fi

./scripts/start-dockerd.sh

if ! docker image inspect pushdock/stack:bookworm >/dev/null 2>&1; then
  log "building the stack image pushdock/stack:bookworm"
  .venv/bin/pushdock stack:build
elif ! docker run --rm --network none --entrypoint /bin/sh pushdock/stack:bookworm -c 'command -v node && command -v npm && test -x /opt/uv/bin/uv' >/dev/null 2>&1; then
  log "the stack image is from an older pushdock (no node/npm/uv): rebuilding it"
  .venv/bin/pushdock stack:build --force
fi
log "ready"
