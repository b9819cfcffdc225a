"""The built-in ``shelly`` plugin: Shelly Gen1 (HTTP) and Gen2+ (JSON-RPC over WebSocket) devices."""
