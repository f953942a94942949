#!/usr/bin/env bash
# The main job: a real federated training run on an embedded dataset, no accounts, no network
# beyond the package index for the first install. Extra arguments go to `syft-flwr demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
bootstrap_install demo -e "$ROOT/core" -e "$ROOT/plugins/memory" -e "$ROOT/plugins/syftbox" \
    -e "$ROOT/plugins/gdrive"
exec "$VENV/bin/syft-flwr" demo "$@"
