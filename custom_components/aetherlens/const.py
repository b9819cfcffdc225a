"""Constants of the AetherLens integration."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

DOMAIN: Final = "aetherlens"
LOGGER = logging.getLogger(__package__)

# The API version this integration speaks (`GET /api/v1/info` -> `api_version`). A core that reports a
# different major version gets a repair issue instead of half-working entities.
SUPPORTED_API_VERSION: Final = 1

CONF_API_KEY: Final = "api_key"
CONF_URL: Final = "url"

# Options
CONF_SCAN_INTERVAL: Final = "scan_interval"
CONF_DEVICES: Final = "devices"
CONF_CLOUD_ACCOUNTS: Final = "cloud_accounts"
CONF_STATISTICS: Final = "statistics"

DEFAULT_SCAN_INTERVAL: Final = 60  # seconds; costs change once per pricing run, live values come pushed
MIN_SCAN_INTERVAL: Final = 10
MAX_SCAN_INTERVAL: Final = 3600
DEFAULT_STATISTICS: Final = True

# WebSocket reconnect backoff: 1 s, doubling, capped at 5 minutes.
STREAM_BACKOFF_INITIAL: Final = timedelta(seconds=1)
STREAM_BACKOFF_MAX: Final = timedelta(minutes=5)

EVENT_ALERT: Final = "aetherlens_alert"

SERVICE_REFRESH: Final = "refresh"
SERVICE_ACKNOWLEDGE_ALERT: Final = "acknowledge_alert"
SERVICE_GET_BILL: Final = "get_bill"

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_EVENT_ID: Final = "event_id"
ATTR_START: Final = "start"
ATTR_END: Final = "end"
ATTR_DEVICE_ID: Final = "device_id"
ATTR_TARIFF_ID: Final = "tariff_id"

ISSUE_NO_TARIFF: Final = "no_active_tariff"
ISSUE_API_VERSION: Final = "incompatible_api_version"
