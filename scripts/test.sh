#!/usr/bin/env bash
# The test suite of every distribution in the workspace. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
bootstrap_install test -e "$ROOT/core[test]" -e "$ROOT/plugins/memory[test]"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
