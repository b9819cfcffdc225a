"""Authentication and authorisation: users, passwords, JWTs, refresh sessions, API keys, roles/scopes."""
