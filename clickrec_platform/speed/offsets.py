"""The speed layer's Kafka offsets, kept in Postgres beside the rows they produced.

Exactly once without Kafka transactions: a batch's rows and the next offset of every partition it read
commit in one Postgres transaction, and a consumer starts each partition it is assigned from the
offset stored here (Kafka's own committed offsets are only informational, for lag tools). Each
advance is a compare-and-set from the offset the consumer started the batch at, so a consumer that
lost a partition in a rebalance (a zombie still finishing its batch) fails its transaction instead of
applying the records a second time; it rolls back, seeks to the stored offsets and goes on.

Per partition the row also counts the valid and rejected records consumed so far, and
``speed_layer_rejects`` counts the rejected ones by reason: every count moves with the offsets, so
they are exact across crashes, restarts and rebalances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from clickrec_platform.serving.live_ddl import GOLD_SCHEMA
from clickrec_platform.serving.pg_copy import comment_on

OFFSETS_TABLE = "speed_layer_offsets"
REJECTS_TABLE = "speed_layer_rejects"

_DDL = (
    """CREATE TABLE IF NOT EXISTS {schema}.speed_layer_offsets (
        consumer_group text NOT NULL,
        topic text NOT NULL,
        kafka_partition integer NOT NULL,
        next_offset bigint NOT NULL,
        valid_records bigint NOT NULL DEFAULT 0,
        rejected_records bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer_group, topic, kafka_partition)
    )""",
    """CREATE TABLE IF NOT EXISTS {schema}.speed_layer_rejects (
        consumer_group text NOT NULL,
        topic text NOT NULL,
        reason text NOT NULL,
        records bigint NOT NULL,
        last_seen_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer_group, topic, reason)
    )""",
)
_COMMENTS = {
    OFFSETS_TABLE: (
        "Where the speed layer (clickrec speed) is in each Kafka partition: the next offset to read, "
        "committed in the same transaction as the live-table rows of the records before it.",
        {"consumer_group": "Kafka consumer group of the speed layer.",
         "topic": "Kafka topic.",
         "kafka_partition": "Kafka partition.",
         "next_offset": "Offset of the next record to apply; the consumer starts here.",
         "valid_records": "Records of this partition applied as events so far.",
         "rejected_records": "Records of this partition that were not valid events (see speed_layer_rejects).",
         "updated_at": "When a batch last advanced this partition."}),
    REJECTS_TABLE: (
        "Records the speed layer could not apply, counted by the contract's reason code (the lake's "
        "silver.quarantine keeps the records themselves).",
        {"consumer_group": "Kafka consumer group of the speed layer.",
         "topic": "Kafka topic.",
         "reason": "Reason code, as silver.quarantine gives it (malformed_json, missing_field:source, ...).",
         "records": "Records rejected for this reason so far.",
         "last_seen_at": "When a batch last counted one."}),
}


class Fenced(RuntimeError):
    """A partition's stored offset is not the one this consumer started its batch from: another
    consumer owns the partition now (or did in between). The batch must be rolled back."""


@dataclass(frozen=True)
class PartitionAdvance:
    """What one batch read from one partition."""

    partition: int
    expected: int | None  # the stored next offset the batch started from; None: no row yet
    next_offset: int  # last offset read + 1
    valid: int
    rejected: int


@dataclass(frozen=True)
class PartitionProgress:
    partition: int
    next_offset: int
    valid: int
    rejected: int
    updated_at: datetime


def ensure_offset_tables(conn: psycopg.Connection, schema: str = GOLD_SCHEMA) -> None:
    """Create the schema, the two bookkeeping tables and their comments where missing (idempotent)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"clickrec.speed_layer.{schema}",))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for statement in _DDL:
            cur.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))
        for table, (comment, columns) in _COMMENTS.items():
            comment_on(cur, "TABLE", sql.Identifier(schema, table), comment, columns)


def stored_offsets(conn: psycopg.Connection, group: str, topic: str, partitions: Iterable[int],
                   schema: str = GOLD_SCHEMA) -> dict[int, int]:
    """The stored next offset of each of ``partitions`` that has one."""
    rows = conn.execute(
        sql.SQL("SELECT kafka_partition, next_offset FROM {} WHERE consumer_group = %s AND topic = %s "
                "AND kafka_partition = ANY(%s)").format(sql.Identifier(schema, OFFSETS_TABLE)),
        (group, topic, list(partitions))).fetchall()
    return dict(rows)


def advance_offsets(conn: psycopg.Connection, group: str, topic: str, advances: Sequence[PartitionAdvance],
                    schema: str = GOLD_SCHEMA) -> None:
    """Move each partition from its expected offset to its next one, in one statement inside the caller's
    transaction; raises ``Fenced`` when a stored offset is not the expected one. Rows are locked in
    partition order, so two consumers never deadlock on them."""
    advances = sorted(advances, key=lambda a: a.partition)
    if not advances:
        return
    target = sql.Identifier(schema, OFFSETS_TABLE)
    # A row is written where none exists, or where its offset is the expected one; a conflicting row
    # whose offset differs (or exists though none was expected: NULL = x is never true) is left alone.
    changed = conn.execute(sql.SQL("""
        INSERT INTO {target} AS t (consumer_group, topic, kafka_partition, next_offset, valid_records,
                                   rejected_records)
        SELECT %(group)s, %(topic)s, a.kafka_partition, a.next_offset, a.valid, a.rejected
        FROM unnest(%(partitions)s::int[], %(next)s::bigint[], %(valid)s::bigint[], %(rejected)s::bigint[])
             AS a (kafka_partition, next_offset, valid, rejected)
        ORDER BY a.kafka_partition
        ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE SET
            next_offset = EXCLUDED.next_offset,
            valid_records = t.valid_records + EXCLUDED.valid_records,
            rejected_records = t.rejected_records + EXCLUDED.rejected_records,
            updated_at = now()
        WHERE t.next_offset = (%(expected)s::bigint[])[array_position(%(partitions)s::int[], t.kafka_partition)]
        RETURNING kafka_partition
    """).format(target=target), {
        "group": group, "topic": topic, "partitions": [a.partition for a in advances],
        "next": [a.next_offset for a in advances], "valid": [a.valid for a in advances],
        "rejected": [a.rejected for a in advances], "expected": [a.expected for a in advances],
    }).fetchall()
    missed = sorted({a.partition for a in advances} - {partition for (partition,) in changed})
    if missed:
        expected = {a.partition: a.expected for a in advances}
        raise Fenced(f"{topic}{missed}: stored offsets are not {[expected[p] for p in missed]}; another "
                     "consumer has taken the partition(s) over")


def add_rejects(conn: psycopg.Connection, group: str, topic: str, counts: Mapping[str, int],
                schema: str = GOLD_SCHEMA) -> None:
    """Add rejected-record counts by reason, inside the caller's transaction."""
    if not counts:
        return
    reasons = sorted(counts)
    conn.execute(sql.SQL("""
        INSERT INTO {} AS t (consumer_group, topic, reason, records)
        SELECT %s, %s, reason, records FROM unnest(%s::text[], %s::bigint[]) AS r (reason, records)
        ON CONFLICT (consumer_group, topic, reason) DO UPDATE SET
            records = t.records + EXCLUDED.records, last_seen_at = now()
    """).format(sql.Identifier(schema, REJECTS_TABLE)), (group, topic, reasons, [counts[r] for r in reasons]))


def progress(conn: psycopg.Connection, group: str, topic: str, schema: str = GOLD_SCHEMA) -> list[PartitionProgress]:
    """Every partition's stored position and counts, in partition order."""
    rows = conn.execute(
        sql.SQL("SELECT kafka_partition, next_offset, valid_records, rejected_records, updated_at FROM {} "
                "WHERE consumer_group = %s AND topic = %s ORDER BY kafka_partition").format(
            sql.Identifier(schema, OFFSETS_TABLE)), (group, topic)).fetchall()
    return [PartitionProgress(*row) for row in rows]


def rejects(conn: psycopg.Connection, group: str, topic: str, schema: str = GOLD_SCHEMA) -> dict[str, int]:
    rows = conn.execute(
        sql.SQL("SELECT reason, records FROM {} WHERE consumer_group = %s AND topic = %s").format(
            sql.Identifier(schema, REJECTS_TABLE)), (group, topic)).fetchall()
    return dict(rows)
