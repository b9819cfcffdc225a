# shellcheck shell=bash
# Shared by the add-on's scripts. The variables can be overridden so the scripts run outside the
# container too (tests/core/addon runs them against a temporary data folder).
ADDON_DATA_DIR="${ADDON_DATA_DIR:-/data}"
ADDON_CONFIG_DIR="${ADDON_CONFIG_DIR:-/config}"
ADDON_CLI="${ADDON_CLI:-aetherlens}"
CORE_CONFIG="${ADDON_DATA_DIR}/aetherlens.yaml"
BACKUP_DIR="${ADDON_DATA_DIR}/backup"
export ADDON_DATA_DIR ADDON_CONFIG_DIR ADDON_CLI CORE_CONFIG BACKUP_DIR

log() {
  echo "[aetherlens-addon] $*" >&2
}
