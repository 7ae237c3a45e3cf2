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

ensure_venv() {
  local python stamp
  python="$(find_python)" || die "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $python"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv
      "$python" -m venv "$VENV" || die "could not create a virtual environment with $python"
    fi
  fi
  stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing the archiver and its dependencies into .venv (pip install -e '.[dev]')"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null || die "could not upgrade pip"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" || die "pip install -e '.[dev]' failed (see above)"
    rm -f "$VENV"/.installed-* && touch "$stamp"
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

ensure_chromium() {  # headless Chromium and its driver, for the status page's browser test
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then return 0; fi
  apt_install chromium chromium-driver
  command -v chromedriver >/dev/null 2>&1 || die "chromedriver is still missing after installing chromium-driver"
}
