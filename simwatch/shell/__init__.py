"""Pieces of the imperative shell shared by the sources, sinks, HTTP layer and service.

Settings, the source and sink contracts, backoff, failure/recovery logging, durable
files, dead letters, MQTT connections and the offline replay. Imports only the core.
"""
