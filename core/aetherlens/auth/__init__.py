"""Authentication and authorisation: users, passwords, JWTs, refresh sessions, API keys, roles/scopes.

A domain of its own, free of HTTP (nothing here imports aiohttp): the API maps it to requests in
``aetherlens.api.security``, and the CLI's ``users``/``api-keys`` commands use it directly.
"""
