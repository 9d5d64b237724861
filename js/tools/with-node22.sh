#!/usr/bin/env bash
# Run a command with Node.js 22 first on PATH, e.g. `tools/with-node22.sh node --test test/`.
# Node 22 comes from the npm registry as the node-linux-<arch> package (the Node.js binary the
# `node` package would pick), installed once under js/.node22/. NODE22_VERSION picks another 22.x.
set -euo pipefail
js="$(cd "$(dirname "$0")/.." && pwd)"
version="${NODE22_VERSION:-22.23.3}"
prefix="$js/.node22"
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "with-node22.sh: no node-linux package for $(uname -m)" >&2; exit 1 ;;
esac
node22="$prefix/node_modules/node-linux-$arch/bin/node"
if [ "$("$node22" --version 2>/dev/null)" != "v$version" ]; then
  npm install --no-save --no-package-lock --no-audit --no-fund --silent \
    --prefix "$prefix" "node-linux-$arch@$version" >&2
fi
PATH="$(dirname "$node22"):$PATH" exec "$@"
