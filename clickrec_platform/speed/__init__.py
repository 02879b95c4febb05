"""The speed layer: a Kafka consumer group that keeps the Postgres live tables current within a
second, exactly once (offsets committed in Postgres with the rows). ``clickrec speed`` runs one."""
