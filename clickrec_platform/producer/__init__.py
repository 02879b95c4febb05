"""Sending events to Kafka fast: pacing, the confluent-kafka sink, and the produce loop."""
