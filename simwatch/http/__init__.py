"""The HTTP layer: the aiohttp app, auth, JSON views, OpenAPI and the /metrics collector."""
