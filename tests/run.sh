#!/usr/bin/env bash
# README's test command. On a fresh machine it installs what it needs, starts a PostgreSQL
# cluster on loopback for the tests that need one (tests/postgres.sh; RIPOSTE_TEST_POSTGRES holds
# its URL), builds the host once (dev profile, optimised dependencies), builds every plugin from
# source, and runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> starting PostgreSQL on 127.0.0.1 for the tests (installs Debian's postgresql package if needed)"
postgres_dir=$(mktemp -d)
# Stopped and removed however this script ends, so nothing is left running.
trap 'tests/postgres.sh stop "$postgres_dir"' EXIT
RIPOSTE_TEST_POSTGRES=$(tests/postgres.sh start "$postgres_dir")
# The server takes TLS only; its certificate's CA:
RIPOSTE_TEST_POSTGRES_CA=$postgres_dir/ca.pem
export RIPOSTE_TEST_POSTGRES RIPOSTE_TEST_POSTGRES_CA

echo "==> installing Chromium and ChromeDriver for the console's browser test (Debian's packages, if needed)"
tests/browser.sh >/dev/null

echo "==> building the host"
# A fresh build gains nothing from incremental compilation, and its files took disk space a CI
# machine ran out of.
export CARGO_INCREMENTAL=0
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
