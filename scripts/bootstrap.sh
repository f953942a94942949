# Sourced by demo.sh and test.sh: create .venv and install the workspace's distributions.
# Re-running is cheap: installation is skipped while the pyproject files are unchanged.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SYFT_FLWR_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"syft-flwr needs Python 3.11 or newer, found {sys.version.split()[0]}")
PY

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

bootstrap_install() {
    # $1: a label for the stamp file; remaining args: pip requirement specs
    local label="$1"; shift
    local stamp="$VENV/.syft-flwr-$label.stamp"
    local digest
    local -a manifests
    shopt -s nullglob
    manifests=("$ROOT"/pyproject.toml "$ROOT"/core/pyproject.toml "$ROOT"/plugins/*/pyproject.toml \
        "$ROOT"/examples/*/pyproject.toml "$ROOT"/plugins/*/*requirements*.txt \
        "$ROOT"/bench/requirements.txt "$ROOT"/scripts/*requirements*.txt)
    shopt -u nullglob
    digest="$(cat "${manifests[@]}" | sha256sum | cut -d' ' -f1) $*"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    echo "installing into $VENV ..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    echo "$digest" > "$stamp"
}
