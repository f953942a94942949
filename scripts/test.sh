#!/usr/bin/env bash
# The test suite of every distribution in the workspace. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
# Every distribution of the workspace with its test extra, then the real SyftBox Python stack
# (syft-rpc, syft-event, syft-crypto) for the interoperability tests: it must be installed
# without dependency resolution, see plugins/syftbox/interop-requirements.txt.
# The memory plugin is named once without extras as well: the core's test extra requires it, and
# on a fresh venv pip's resolver does not match that requirement to the `[test]` form alone.
bootstrap_install test \
    -e "$ROOT/core[test]" \
    -e "$ROOT/plugins/memory" \
    -e "$ROOT/plugins/memory[test]" \
    -e "$ROOT/plugins/syftbox[test]" \
    -e "$ROOT/plugins/gdrive[test]" \
    -e "$ROOT/examples/sqlite-transport[test]"
bootstrap_install interop --no-deps -r "$ROOT/plugins/syftbox/interop-requirements.txt"
# What the results page (bench/report.py, tested in tests/test_benches.py) plots with.
bootstrap_install bench -r "$ROOT/bench/requirements.txt"
# What runs the suite in parallel.
bootstrap_install runner -r "$ROOT/scripts/test-requirements.txt"
# Tests run in one worker process per core, at most 4 (SYFT_FLWR_TEST_WORKERS overrides it; 0
# runs them in this process): most of the suite's time is multi-process runs waiting on each
# other, and every test is written to pass with the machine loaded. Work is stolen between
# workers, so one long test does not hold the others back.
WORKERS="${SYFT_FLWR_TEST_WORKERS:-$(nproc)}"
[ "$WORKERS" -gt 4 ] && WORKERS=4
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -n "$WORKERS" --dist worksteal "$@"
