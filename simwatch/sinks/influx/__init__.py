"""The InfluxDB sink: the schema and the batched writer."""
