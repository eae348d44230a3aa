#!/usr/bin/env bash
# README's test command. On a fresh machine it installs what it needs, builds the host once
# (dev profile, optimised dependencies), builds every plugin from source, and runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building the host"
cargo build --workspace --all-targets

echo "==> building the plugins from source (installs the offline WebAssembly toolchain, componentize-py and jco if needed)"
cargo run --quiet -p riposte -- plugin build

echo "==> testing the guest SDKs (Python against bindings generated from wit/, JavaScript under node --test)"
python3 -m unittest discover -s guest-sdk/python/tests
node --import ./guest-sdk/js/test/register.mjs --test guest-sdk/js/test/*.test.mjs plugins/*/test/*.test.mjs

echo "==> running the tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  # nextest does not run doc tests.
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
