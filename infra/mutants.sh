#!/usr/bin/env bash
# Mutation testing of the domain rules (not in CI: it takes long). Installs a pinned
# cargo-mutants, mutates shared/src/domain (or the files given) and runs the common
# crate's unit tests against each mutant. A mutant that survives is either killed with a
# test or listed in docs/testing.md as equivalent, with the reason.
# Usage: ./infra/mutants.sh [--iterate] [shared/src/domain/money.rs ...]
#   --iterate: run again only the mutants the last run did not catch (after adding tests).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/dabs-platform"
TOOLS="$CACHE/tools"
CARGO_MUTANTS_VERSION="25.3.1"
if [ ! -f "$TOOLS/.installed-cargo-mutants-$CARGO_MUTANTS_VERSION" ]; then
  cargo install --quiet --locked --root "$TOOLS" --version "$CARGO_MUTANTS_VERSION" cargo-mutants
  touch "$TOOLS/.installed-cargo-mutants-$CARGO_MUTANTS_VERSION"
fi

# Its own build folder, so a run in the background never waits on the developer's builds
# for the lock; incremental builds without debug info make a mutant's rebuild of the common
# crate take seconds instead of half a minute.
export CARGO_TARGET_DIR="${DABS_MUTANTS_TARGET_DIR:-$CACHE/mutants-target}"
export CARGO_PROFILE_DEV_INCREMENTAL=true CARGO_PROFILE_DEV_DEBUG=0

extra=()
if [ "${1:-}" = "--iterate" ]; then
  extra+=(--iterate)
  shift
fi
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(find shared/src/domain -name '*.rs' | sort)
fi
args=()
for file in "${files[@]}"; do args+=(--file "$file"); done

# The unit tests of the common crate hold the domain's rules; a mutant that only the
# slower suites would notice is reported as surviving here, and looked at by hand.
"$TOOLS/bin/cargo-mutants" mutants --package shared "${args[@]}" "${extra[@]}" \
  --output "$CACHE/mutants" --timeout 20 -- --lib
