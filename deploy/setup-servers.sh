#!/usr/bin/env bash
# Install and start this machine's RabbitMQ and PostgreSQL on Debian/Ubuntu, the way the
# services expect them: RabbitMQ with the consistent-hash exchange and Prometheus plugins,
# PostgreSQL letting `postgres` in over loopback without a password. Idempotent: what is
# installed is not reinstalled, what runs is not restarted.
#
#   deploy/setup-servers.sh               what `make up` runs (as root or through sudo)
#   deploy/setup-servers.sh --test-tools  also promtool (Prometheus), chromium, firefox-esr, python3-venv
#                                         and make, what `make test` needs (.ci/run)
#   deploy/setup-servers.sh --docker      also a Docker engine (Debian's docker.io, started
#                                         when not answering), docker-compose and debootstrap,
#                                         what `make test-compose` needs (docs/docker.md)
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }
SUDO=""; [ "$EUID" = 0 ] || SUDO="sudo"
# The servers' tools live in sbin, which a normal user's PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

test_tools=false
docker=false
for arg in "$@"; do
  case "$arg" in
    --test-tools) test_tools=true ;;
    --docker) docker=true ;;
    *) echo "usage: $0 [--test-tools] [--docker]" >&2; exit 64 ;;
  esac
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-servers.sh: no apt-get (not Debian/Ubuntu): install RabbitMQ 3.10+ and PostgreSQL 13+ yourself" >&2
  exit 1
fi

missing=()
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v pg_ctlcluster  >/dev/null 2>&1 || missing+=(postgresql)
if $test_tools; then
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # promtool + a real scrape test
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # the console's browser tests
  command -v firefox-esr >/dev/null 2>&1 || missing+=(firefox-esr)  # the console in Firefox
fi
if $docker; then
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)  # the images' base
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# PostgreSQL: start every cluster that is down, and let `postgres` in over loopback.
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  for version in $(ls /etc/postgresql); do
    log "starting PostgreSQL $version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  # Any local user can then connect as postgres over loopback: a development or CI machine's
  # setting. On a shared host, give postgres a password and put it in DATABASE_URL instead.
  log "allowing trust auth for postgres on loopback"
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  done
  for version in $(ls /etc/postgresql); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
  done
fi

# RabbitMQ: the consistent-hash exchange and Prometheus plugins, then the server itself.
PLUGINS="rabbitmq_consistent_hash_exchange rabbitmq_prometheus"
if ! $SUDO rabbitmqctl -q status >/dev/null 2>&1; then
  $SUDO rabbitmq-plugins enable --offline $PLUGINS >/dev/null
  log "starting RabbitMQ"
  $SUDO rabbitmq-server -detached
  # await_startup gives up at once while the node is not yet registered: poll until it is.
  for _ in $(seq 120); do
    $SUDO rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 && break
    sleep 1
  done
  $SUDO rabbitmqctl -q await_startup --timeout 30
else
  $SUDO rabbitmq-plugins enable $PLUGINS >/dev/null
fi

# Docker: the engine, started like RabbitMQ when it does not answer (no systemd needed).
if $docker && ! $SUDO docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/dockerd.log)"
  $SUDO sh -c 'nohup dockerd >>/var/log/dockerd.log 2>&1 &'
  for _ in $(seq 60); do $SUDO docker info >/dev/null 2>&1 && break; sleep 1; done
  $SUDO docker info >/dev/null
fi
