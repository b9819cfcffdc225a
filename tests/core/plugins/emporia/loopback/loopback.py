"""Test harness only: the real ``emporia`` plugin, pointed at the loopback Cognito and Emporia API.

It runs inside the plugin process the supervisor starts (which gets a minimal environment, so the test
process cannot reach pyemvue's settings there) and changes nothing but where pyemvue sends requests:

- ``AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER``: boto3's documented per-service endpoint setting; the
  Cognito client pycognito makes goes to moto.
- ``COGNITO_JWKS``: pycognito's documented way to give it the pool's public keys. pycognito checks the
  token issuer against AWS's URL (which is what Cognito, and moto, put into the tokens) and would fetch
  the keys from there too; with the endpoint set by environment it cannot know the loopback URL.
- pyemvue's module constants ``pyemvue.auth.USER_POOL`` / ``CLIENT_ID`` / ``USER_POOL_URL`` and
  ``pyemvue.pyemvue.API_ROOT``: pyemvue has no parameter for them (``PyEmVue.login()`` builds its
  ``Auth`` with them), and moto cannot create a pool with Emporia's id. Production keeps pyemvue's
  values (Emporia's pool ``us-east-2_ghlOXVLi1`` and ``https://api.emporiaenergy.com``).
- ``MIN_REQUEST_INTERVAL`` of the plugin: so the tests can space requests by less than a minute.
"""

from __future__ import annotations

import os
from typing import Any

import pyemvue.auth
import pyemvue.pyemvue

from aetherlens.plugins.builtin.emporia import plugin as emporia


class LoopbackEmporia(emporia.EmporiaPlugin):
    def validate_config(self, config: dict[str, Any]) -> list[str]:
        loop = config.pop("loopback")
        os.environ["AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"] = loop["cognito"]
        os.environ["COGNITO_JWKS"] = loop["jwks"]
        pyemvue.auth.USER_POOL = loop["user_pool_id"]
        pyemvue.auth.CLIENT_ID = loop["client_id"]
        pyemvue.auth.USER_POOL_URL = f"{loop['cognito']}/{loop['user_pool_id']}"
        pyemvue.pyemvue.API_ROOT = loop["api"]
        emporia.MIN_REQUEST_INTERVAL = float(loop.get("min_request_interval", emporia.MIN_REQUEST_INTERVAL))
        return super().validate_config(config)
