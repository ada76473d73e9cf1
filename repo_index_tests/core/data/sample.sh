#!/usr/bin/env bash
set -euo pipefail

# Print a message to stderr.
log() {
  echo "[$(date +%H:%M:%S)] $*" >&2
}

function backup {
  local src=$1 dest=$2
  log "backing up $src"
  tar -czf "$dest/$(basename "$src").tgz" "$src"
}

for dir in "$@"; do
  backup "$dir" /tmp
done
