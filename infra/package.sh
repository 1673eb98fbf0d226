#!/usr/bin/env bash
# Builds every Lambda function for arm64 (provided.al2023), as `sam build` does, and
# prints each one's binary and zip size. Installs what it needs: the Rust target,
# cargo-lambda and Zig (from PyPI, in a virtualenv under the cache folder).
# Usage: ./infra/package.sh            (zips in $CARGO_TARGET_DIR/lambda/<function>/)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/dabs-platform"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dabs-platform-target}"
CARGO_LAMBDA_VERSION="1.9.2"
ZIG_VERSION="0.14.1"
FUNCTIONS=(auth offering accounts myinfo matching allocation settlement reconcile notify)
mkdir -p "$CACHE"

step() { printf '\n==> %s\n' "$*" >&2; }

VENV="$CACHE/venv-lambda"
MARK="$VENV/.installed-cargo-lambda-$CARGO_LAMBDA_VERSION-zig-$ZIG_VERSION"
if [ ! -f "$MARK" ]; then
  step "installing cargo-lambda $CARGO_LAMBDA_VERSION and Zig $ZIG_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIG_VERSION" >&2
  touch "$MARK"
fi
export PATH="$VENV/bin:$PATH"
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu >&2

# One function at a time: built together, cargo would give every function the union of
# the shared crate's features (every AWS client), which is what the features avoid.
for f in "${FUNCTIONS[@]}"; do
  step "cargo lambda build --release --arm64 -p $f"
  cargo lambda build --release --arm64 --output-format zip -p "$f" >&2
done

printf '%-12s %12s %12s\n' function binary_bytes zip_bytes
for f in "${FUNCTIONS[@]}"; do
  dir="$CARGO_TARGET_DIR/lambda/$f"
  binary="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/$f"
  printf '%-12s %12s %12s\n' "$f" "$(stat -c %s "$binary")" "$(stat -c %s "$dir/bootstrap.zip")"
done
