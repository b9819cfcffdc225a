"""Stands in for AetherLens's own integration: its entities (platform ``aetherlens``) look like power
and energy sensors, and the homeassistant plugin must never read them back."""
