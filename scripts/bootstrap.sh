# Sourced by scripts/run and scripts/test: makes sure this machine has what the archiver needs.
# Python 3.11+ with venv, the project in .venv, and redis-server (the tests: also Azurite, and Chromium
# with chromedriver for the status page). Says clearly what failed.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '\033[1m[archiver]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[archiver] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else return 1; fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "cannot install $*: no apt-get here; install it with your package manager"
  say "installing $* (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed (run as root or with sudo)"
}

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

make_venv() {  # make_venv DIR [PYTHON]: a virtual environment at DIR, unless one is there
  local dir="$1" python="${2:-}"
  [ -x "$dir/bin/python" ] && return 0
  [ -n "$python" ] || python="$(find_python)" || die "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)"
  say "creating ${dir#"$ROOT"/} with $python"
  if ! "$python" -m venv "$dir" 2>/dev/null; then
    rm -rf "$dir"
    apt_install python3-venv
    "$python" -m venv "$dir" || die "could not create a virtual environment with $python"
  fi
}

lock_stamp() {  # lock_stamp VENV LOCK: the file that says VENV holds LOCK and this pyproject.toml
  echo "$1/.installed-$(basename "$2" .lock)-$(cat "$ROOT/pyproject.toml" "$2" | sha256sum | cut -c1-16)"
}

install_lock() {  # install_lock VENV LOCK [ALSO...]: LOCK's exact versions (hashes checked), then the archiver
  # itself (no dependencies of its own: the lock has them all). ALSO are locks whose pins LOCK includes.
  local venv="$1" lock="$2" log lock_name each
  shift
  lock_name="$(basename "$lock")"
  [ -f "$lock" ] || die "$lock_name is missing (scripts/lock makes it)"
  [ -f "$(lock_stamp "$venv" "$lock")" ] && return 0
  log="$(mktemp)"
  say "installing $lock_name's $(grep -c '^[A-Za-z0-9]' "$lock") pinned packages into ${venv#"$ROOT"/}, then the archiver itself"
  # pip's own chatter (including warnings about index locations this machine's pip.conf names)
  # goes to a log that is shown only when something fails. First the pip the lock pins.
  awk '/^pip==/ { p = 1; print; next } p && /^ +--hash/ { print; next } { p = 0 }' "$lock" >"$log.pip"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --require-hashes \
        -r "$log.pip" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log" "$log.pip"
    die "installing the pip that $lock_name pins failed (pip's output above)"
  fi
  rm -f "$log.pip"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --require-hashes \
        -r "$lock" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    die "pip install --require-hashes -r $lock_name failed (pip's output above)"
  fi
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --no-deps --no-build-isolation \
        -e "$ROOT" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    die "pip install --no-deps -e . failed (pip's output above)"
  fi
  rm -f "$log" "$venv"/.installed-*
  for each in "$@"; do touch "$(lock_stamp "$venv" "$each")"; done
}

# ensure_venv [dev]: .venv with requirements.lock (scripts/run) or requirements-dev.lock (scripts/test,
# a superset with the same runtime pins: a dev install serves scripts/run too).
ensure_venv() {
  make_venv "$VENV"
  if [ "${1:-}" = dev ]; then
    install_lock "$VENV" "$ROOT/requirements-dev.lock" "$ROOT/requirements.lock"
  elif [ ! -f "$(lock_stamp "$VENV" "$ROOT/requirements-dev.lock")" ]; then
    install_lock "$VENV" "$ROOT/requirements.lock"
  fi
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing after installing it"
}

AZURITE_VERSION="3.35.0"  # the newest Azurite that runs on Debian 12's Node 20

ensure_azurite() {
  [ -x "$ROOT/.tools/node_modules/.bin/azurite-blob" ] && return 0
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  say "installing Azurite $AZURITE_VERSION (the Azure Storage emulator) into .tools/ with npm"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools" "azurite@$AZURITE_VERSION" >/dev/null \
    || die "npm install azurite@$AZURITE_VERSION failed (see above)"
}

S3RVER_VERSION="3.7.1"

ensure_s3rver() {  # an S3 server that checks presigned URLs' expiry (moto does not): the link tests, the bench
  [ -x "$ROOT/.tools/node_modules/.bin/s3rver" ] && return 0
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  say "installing s3rver $S3RVER_VERSION (a disk-backed S3 server) into .tools/ with npm"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools" "s3rver@$S3RVER_VERSION" >/dev/null \
    || die "npm install s3rver@$S3RVER_VERSION failed (see above)"
}

ensure_faketime() {  # Debian's libfaketime: processes with skewed clocks, for the clock-skew tests
  compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null && return 0
  say "the clock-skew tests need libfaketime (Debian's package) to run processes with skewed clocks"
  apt_install libfaketime
  compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || die "libfaketime is still missing after installing it"
}

ensure_chromium() {  # headless Chromium and its driver, for the status page's browser test
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
  say "the status page's browser test needs headless Chromium and chromedriver (Debian's packages, about 300 MB)"
  apt_install chromium chromium-driver
  command -v chromedriver >/dev/null 2>&1 || die "chromedriver is still missing after installing chromium-driver"
}
