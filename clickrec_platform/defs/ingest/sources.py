"""Upstream lineage the streaming job owns: the Kafka topic and the bronze table it writes.

These are declared, not computed, by Dagster: the Spark Structured Streaming job in ``spark_jobs/``
writes them continuously, outside the Dagster process.
"""

import dagster as dg

kafka_clickstream = dg.AssetSpec(
    key=["kafka", "clickstream"],
    description="Kafka topic of click events (`clickstream` unless CLICKREC_KAFKA_TOPIC says otherwise): "
                "one JSON event per record, keyed by visitor id (contract: "
                "clickrec_platform.events.contract, schema_version 1).",
    group_name="ingest",
    kinds={"kafka"},
)

bronze_clickstream_raw = dg.AssetSpec(
    key=["delta", "bronze", "clickstream_raw"],
    deps=[kafka_clickstream],
    description="Every Kafka record as received, with its Kafka coordinates (written by the stream job).",
    group_name="ingest",
    kinds={"delta", "spark"},
)
