"""Config flow: manual setup, Supervisor discovery of the add-on, reauth, reconfigure, options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState, ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.core import callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.hassio import HassioServiceInfo

from .api import AetherLensAuthError, AetherLensClient, AetherLensConnectionError, Info, normalize_url
from .const import (
    CONF_API_KEY,
    CONF_CLOUD_ACCOUNTS,
    CONF_DEVICES,
    CONF_SCAN_INTERVAL,
    CONF_STATISTICS,
    CONF_URL,
    DEFAULT_SCAN_INTERVAL,
    DEFAULT_STATISTICS,
    DOMAIN,
    LOGGER,
    MAX_SCAN_INTERVAL,
    MIN_SCAN_INTERVAL,
)
from .coordinator import OPT_EXCLUDED_CLOUD, OPT_EXCLUDED_DEVICES

if TYPE_CHECKING:
    from . import AetherLensConfigEntry

_URL = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
_KEY = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))


class AetherLensConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add an AetherLens core."""

    VERSION = 1

    def __init__(self) -> None:
        self._discovered: dict[str, str] = {}
        self._addon_name = "AetherLens"

    async def _validate(self, url: str, api_key: str) -> tuple[Info | None, dict[str, str]]:
        """Ask the core's /info with this key: the answer, or the form's error."""
        try:
            client = AetherLensClient(url, api_key, async_get_clientsession(self.hass))
            return await client.info(), {}
        except ValueError:
            return None, {CONF_URL: "invalid_url"}
        except AetherLensAuthError:
            return None, {"base": "invalid_auth"}
        except AetherLensConnectionError:
            return None, {"base": "cannot_connect"}
        except Exception:
            LOGGER.exception("Unexpected error while validating the AetherLens core")
            return None, {"base": "unknown"}

    # -------------------------------------------------------------------------------- user

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._validate(user_input[CONF_URL], user_input[CONF_API_KEY])
            if info is not None:
                await self.async_set_unique_id(info.instance_id)
                self._abort_if_unique_id_configured()
                return self.async_create_entry(
                    title="AetherLens",
                    data={
                        CONF_URL: normalize_url(user_input[CONF_URL]),
                        CONF_API_KEY: user_input[CONF_API_KEY],
                    },
                )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_URL): _URL, vol.Required(CONF_API_KEY): _KEY}),
                user_input or {CONF_URL: "http://"},
            ),
            errors=errors,
        )

    # ---------------------------------------------------------------------------- discovery

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """The add-on announced itself (service `aetherlens`: host, port, api_key)."""
        config = discovery_info.config
        url = f"http://{config['host']}:{config['port']}"
        api_key = str(config["api_key"])
        info, errors = await self._validate(url, api_key)
        if info is None:
            return self.async_abort(reason=errors.get("base", "cannot_connect"))
        await self.async_set_unique_id(info.instance_id)
        # A known core announced a new address or key: take them and reload (discovery-update-info).
        self._abort_if_unique_id_configured(updates={CONF_URL: url, CONF_API_KEY: api_key})
        self._discovered = {CONF_URL: url, CONF_API_KEY: api_key}
        self._addon_name = str(config.get("addon") or discovery_info.name or "AetherLens")
        self.context["title_placeholders"] = {"name": self._addon_name}
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        if user_input is not None:
            return self.async_create_entry(title=self._addon_name, data=self._discovered)
        return self.async_show_form(
            step_id="hassio_confirm", description_placeholders={"addon": self._addon_name}
        )

    # -------------------------------------------------------------------------------- reauth

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._validate(entry.data[CONF_URL], user_input[CONF_API_KEY])
            if info is not None:
                await self.async_set_unique_id(info.instance_id)
                self._abort_if_unique_id_mismatch(reason="wrong_instance")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_API_KEY: user_input[CONF_API_KEY]}
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_API_KEY): _KEY}),
            description_placeholders={"url": entry.data[CONF_URL]},
            errors=errors,
        )

    # --------------------------------------------------------------------------- reconfigure

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._validate(user_input[CONF_URL], entry.data[CONF_API_KEY])
            if info is not None:
                await self.async_set_unique_id(info.instance_id)
                self._abort_if_unique_id_mismatch(reason="wrong_instance")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_URL: normalize_url(user_input[CONF_URL])}
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_URL): _URL}), user_input or {CONF_URL: entry.data[CONF_URL]}
            ),
            errors=errors,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: AetherLensConfigEntry) -> AetherLensOptionsFlow:
        return AetherLensOptionsFlow()


class AetherLensOptionsFlow(OptionsFlow):
    """Update interval, which devices and cloud accounts to show, long-term statistics on/off."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry: AetherLensConfigEntry = self.config_entry
        if entry.state is not ConfigEntryState.LOADED:
            # The choices come from the running coordinator (the core's devices and accounts).
            return self.async_abort(reason="not_loaded")
        coordinator = entry.runtime_data.coordinator
        devices = coordinator.data.devices
        accounts = coordinator.data.cloud or {}
        if user_input is not None:
            chosen_devices = set(user_input.get(CONF_DEVICES, ()))
            chosen_cloud = set(user_input.get(CONF_CLOUD_ACCOUNTS, ()))
            # Stored as exclusions, so devices and accounts added to the core later appear by themselves.
            return self.async_create_entry(
                data={
                    CONF_SCAN_INTERVAL: int(user_input[CONF_SCAN_INTERVAL]),
                    CONF_STATISTICS: bool(user_input[CONF_STATISTICS]),
                    OPT_EXCLUDED_DEVICES: sorted(set(devices) - chosen_devices),
                    OPT_EXCLUDED_CLOUD: sorted(set(accounts) - chosen_cloud),
                }
            )
        excluded_devices = set(entry.options.get(OPT_EXCLUDED_DEVICES, ()))
        excluded_cloud = set(entry.options.get(OPT_EXCLUDED_CLOUD, ()))
        schema: dict[Any, Any] = {
            vol.Required(
                CONF_SCAN_INTERVAL, default=entry.options.get(CONF_SCAN_INTERVAL, DEFAULT_SCAN_INTERVAL)
            ): NumberSelector(
                NumberSelectorConfig(
                    min=MIN_SCAN_INTERVAL,
                    max=MAX_SCAN_INTERVAL,
                    step=1,
                    mode=NumberSelectorMode.BOX,
                    unit_of_measurement="s",
                )
            ),
            vol.Required(
                CONF_DEVICES, default=sorted(d for d in devices if d not in excluded_devices)
            ): SelectSelector(
                SelectSelectorConfig(
                    options=[
                        SelectOptionDict(value=d.id, label=f"{d.name} ({d.id})")
                        for d in sorted(devices.values(), key=lambda d: d.name)
                    ],
                    multiple=True,
                )
            ),
        }
        if accounts:
            schema[
                vol.Required(
                    CONF_CLOUD_ACCOUNTS, default=sorted(a for a in accounts if a not in excluded_cloud)
                )
            ] = SelectSelector(
                SelectSelectorConfig(
                    options=[SelectOptionDict(value=key, label=key) for key in sorted(accounts)],
                    multiple=True,
                )
            )
        schema[
            vol.Required(CONF_STATISTICS, default=entry.options.get(CONF_STATISTICS, DEFAULT_STATISTICS))
        ] = BooleanSelector()
        return self.async_show_form(step_id="init", data_schema=vol.Schema(schema))
