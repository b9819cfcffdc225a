"""The credential the configuration asks for: a service principal, a managed identity, or the chain."""

from __future__ import annotations

from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

from .config import AzureCostConfig


def describe(cfg: AzureCostConfig) -> str:
    """Which credential mode is in use, for health (never the values)."""
    if cfg.service_principal:
        return "service_principal"
    return cfg.credential


def build(cfg: AzureCostConfig) -> AsyncTokenCredential:
    if cfg.service_principal:
        assert cfg.tenant_id and cfg.client_id and cfg.client_secret  # config.problems() saw to it
        kwargs: dict[str, Any] = {}
        if cfg.authority:
            # A sovereign cloud, Azure Stack or a test authority: instance discovery would ask the
            # public cloud whether this host is an authority, which it cannot know.
            kwargs["authority"] = cfg.authority
            kwargs["disable_instance_discovery"] = True
        if cfg.ca_file:
            kwargs["connection_verify"] = cfg.ca_file
        return ClientSecretCredential(cfg.tenant_id, cfg.client_id, cfg.client_secret, **kwargs)
    if cfg.credential == "managed_identity":
        if cfg.managed_identity_client_id:
            return ManagedIdentityCredential(client_id=cfg.managed_identity_client_id)
        return ManagedIdentityCredential()
    chain: dict[str, Any] = {}
    if cfg.authority:
        chain["authority"] = cfg.authority
    if cfg.managed_identity_client_id:
        chain["managed_identity_client_id"] = cfg.managed_identity_client_id
    return DefaultAzureCredential(**chain)
