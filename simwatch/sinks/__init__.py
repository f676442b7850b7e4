"""Output sinks: where the daemon sends what it found (Alertmanager, InfluxDB, MQTT)."""
