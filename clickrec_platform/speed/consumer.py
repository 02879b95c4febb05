"""The speed layer: Kafka → the Postgres live tables in well under a second, exactly once.

A plain Kafka consumer (confluent-kafka) in a consumer group: it decodes each record with the event
contract's own decoder (``events.codec.decode``, the producer's and the Spark parser's rules), and
applies each batch of valid events with ``apply_live_events`` (``live_clickstream_events``,
``user_recent_items``) in one Postgres transaction that also advances the partitions' offsets
(``speed/offsets.py``) and counts the rejected records by reason. So a crash at any point, a replay,
or a rebalance between consumers of the group loses and repeats nothing: a partition is always read
on from the offset stored with the rows, and a consumer that lost a partition cannot commit it.

A batch is what arrives within ``linger_ms`` of its first record (up to ``max_batch``): a few
records when traffic is light, so a click reaches Postgres within a fraction of a second while the
per-transaction cost is shared; tens of thousands when catching up. The ``windowed_stats`` / ``trending_items`` windows the
events fall in are recomputed from ``live_clickstream_events`` at most every ``window_refresh_s``
(a recomputation scans whole windows, which at live rates would cost more than the batches), in the
transaction of the batch that makes them due, or alone when traffic stops. On start every live
window the table holds is recomputed once, so a crash between a batch and its windows' refresh
leaves nothing stale. Totals (``event_statistics``) stay with the stream job's gold query, which
counts deduplicated silver rows.

Records that are not valid events are counted (``speed_layer_rejects``, and the metrics), never
applied; the lake's ``silver.quarantine`` keeps them whole. A Postgres outage rolls the batch back;
the consumer reconnects with a backoff, seeks back to the stored offsets and goes on.

Just over 400 lines because the loop, its batching, rebalancing and recovery are one state machine whose
invariants (offsets committed with the rows) are easier to check in one place.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import psycopg
import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from clickrec_platform.events.codec import InvalidEvent, decode
from clickrec_platform.serving.live_ddl import ensure_live_tables
from clickrec_platform.serving.live_path import live_horizon, post_live_events, refresh_windows
from clickrec_platform.serving.live_tables import LiveApplied, TouchedLiveWindows, live_windows_held
from clickrec_platform.settings import Settings
from clickrec_platform.speed.offsets import (
    Fenced,
    PartitionAdvance,
    add_rejects,
    advance_offsets,
    ensure_offset_tables,
    stored_offsets,
)

log = logging.getLogger("clickrec.speed")

_TS = pa.timestamp("ms", tz="UTC")
_EVENT_SCHEMA = pa.schema([("event_id", pa.string()), ("ts", pa.int64()), ("visitor_id", pa.int64()),
                           ("event", pa.string()), ("item_id", pa.int64()), ("session_id", pa.string()),
                           ("source", pa.string())])
_RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


@dataclass
class DecodedBatch:
    """A batch of Kafka records as the live tables take them, with what each partition contributed."""

    events: pa.Table
    rejected: Counter = field(default_factory=Counter)  # reason → records
    first_offsets: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    valid_by_partition: Counter = field(default_factory=Counter)
    rejected_by_partition: Counter = field(default_factory=Counter)
    decode_seconds: float = 0.0

    @property
    def records(self) -> int:
        return self.events.num_rows + sum(self.rejected.values())


def since_last_seek(messages: Sequence[Message]) -> list[Message]:
    """The records in the order received, less those a partition's seek back superseded: a rebalance inside
    one poll (the partition revoked and assigned again, sought to its stored offset) delivers part of what
    came before it again, and each record must be counted once."""
    kept: list[Message] = []
    last: dict[int | None, int] = {}
    for message in messages:
        partition, offset = message.partition(), message.offset()
        assert offset is not None  # a consumed record has one
        if partition in last and offset <= last[partition]:
            kept = [m for m in kept if m.partition() != partition]
        last[partition] = offset
        kept.append(message)
    return kept


def decode_batch(messages: Sequence[Message]) -> DecodedBatch:
    """Decode records (errors already filtered out) with the contract's decoder; the valid ones as an
    Arrow table of ``LIVE_EVENT_COLUMNS``, the others counted by reason."""
    started = time.perf_counter()
    columns: list[list] = [[] for _ in _EVENT_SCHEMA.names]
    batch = DecodedBatch(events=pa.table({}))
    for message in messages:
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None  # a consumed record has both
        batch.first_offsets.setdefault(partition, offset)
        batch.next_offsets[partition] = offset + 1
        try:
            event = decode(message.value() or b"")
        except InvalidEvent as invalid:
            batch.rejected[invalid.reason] += 1
            batch.rejected_by_partition[partition] += 1
            continue
        batch.valid_by_partition[partition] += 1
        for values, value in zip(columns, (event.event_id, event.ts, event.visitor_id, event.event, event.item_id,
                                           event.session_id, event.source), strict=True):
            values.append(value)
    table = pa.Table.from_arrays([pa.array(values, type=f.type) for values, f in zip(columns, _EVENT_SCHEMA,
                                                                                      strict=True)],
                                 schema=_EVENT_SCHEMA)
    batch.events = table.set_column(1, "ts", table.column("ts").cast(_TS))
    batch.decode_seconds = time.perf_counter() - started
    return batch


@dataclass(frozen=True)
class BatchApplied:
    """What one committed batch did."""

    records: int
    valid: int
    rejected: Counter  # reason → records
    live: LiveApplied
    windows_refreshed: int  # windowed_stats + trending_items windows recomputed in the same transaction
    seconds: float
    next_offsets: dict[int, int]  # partition → offset after the batch's last record


class SpeedLayer:
    """One consumer of the group; ``run`` until ``stop`` is set. Several processes with the same
    ``group`` share the topic's partitions, as Kafka consumers do."""

    def __init__(self, settings: Settings, *, group: str | None = None, max_batch: int | None = None,
                 window_refresh_s: float | None = None, linger_ms: float | None = None,
                 consumer_config: dict | None = None,
                 on_batch: Callable[[BatchApplied], None] | None = None,
                 on_lag: Callable[[dict[int, int]], None] | None = None,
                 on_problem: Callable[[str], None] | None = None):
        self.settings = settings
        self.group = group or settings.speed_consumer_group
        self.topic = settings.kafka_topic
        self.max_batch = max_batch or settings.speed_max_batch_events
        self.window_refresh_s = settings.speed_window_refresh_seconds if window_refresh_s is None else window_refresh_s
        self.linger_s = (settings.speed_linger_ms if linger_ms is None else linger_ms) / 1000
        self.consumer_config = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": self.group,
            # Offsets live in Postgres: Kafka's are written after each commit, for lag tools only.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "client.id": f"clickrec-speed-{self.group}",
            **(consumer_config or {}),
        }
        self.on_batch, self.on_lag, self.on_problem = on_batch, on_lag, on_problem
        # partition → the stored next offset the next batch starts from (None: nothing stored yet)
        self.positions: dict[int, int | None] = {}
        self.pending = TouchedLiveWindows()
        self._last_refresh = 0.0
        self._conn: psycopg.Connection | None = None
        self._consumer: Consumer | None = None
        self._in_flight: Future | None = None
        self._rewind_needed = False  # set when a batch failed in Postgres: seek back before the next

    # The loop ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        if not self._prepare(stop):
            return
        self._consumer = consumer = Consumer(self.consumer_config, logger=log)
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        # One batch is applied in this worker while the loop polls and decodes the next: the decode's CPU
        # and Postgres's work overlap (psycopg releases the GIL while it waits).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="speed-apply") as worker:
            try:
                while not stop.is_set():
                    messages = self._poll(consumer)
                    if self._rewind_needed:
                        if not self._recover(stop):
                            return
                        continue  # what was polled before the seek goes
                    batch = decode_batch(messages) if messages else None
                    try:
                        self._finish_in_flight()  # the previous batch's failure surfaces here
                        if batch is not None:
                            self._in_flight = worker.submit(self._apply, batch)
                        elif self.pending and self._refresh_due():
                            self._refresh_alone()
                    except Fenced as fenced:  # the decoded batch after the failed one goes too
                        self._problem("fenced", f"batch rolled back: {fenced}")
                        self._rewind_needed = True
                    except psycopg.OperationalError as error:
                        self._problem("postgres", f"Postgres: {error}".strip())
                        self._drop_connection()
                        self._rewind_needed = True
                self._settle()
            finally:
                consumer.close()  # leaves the group at once, so the others take the partitions over
                self._drop_connection()

    def _prepare(self, stop: threading.Event) -> bool:
        """Tables in place and the live windows to recompute once; False if stopped first. The DDL takes
        table locks that can deadlock with another consumer's batch: Postgres then aborts one side, and
        this tries again."""
        attempt = 0
        while (conn := self._connection(stop)) is not None:
            try:
                ensure_live_tables(conn, schema=self.settings.gold_schema)
                ensure_offset_tables(conn, schema=self.settings.gold_schema)
                self.pending = live_windows_held(conn, live_horizon(self.settings), self.settings.gold_schema)
                return True
            except psycopg.OperationalError as error:  # a deadlock, a lock timeout, a dropped connection
                self._problem("postgres", f"preparing the tables: {str(error).strip()}; again")
                self._drop_connection()
                stop.wait(_RECONNECT_BACKOFF_S[min(attempt, len(_RECONNECT_BACKOFF_S) - 1)])
                attempt += 1
        return False

    def _recover(self, stop: threading.Event) -> bool:
        """After a Postgres failure: reconnect (with a backoff) and seek every assigned partition to its
        stored offset; False if stopped first."""
        self._settle()
        self._in_flight = None  # failed or done: either way its outcome is in Postgres
        while self._connection(stop) is not None:
            try:
                self._rewind()
                self._rewind_needed = False
                return True
            except psycopg.OperationalError as error:
                self._problem("postgres", f"rewinding: {str(error).strip()}")
                self._drop_connection()
                stop.wait(1.0)
        return False

    def _finish_in_flight(self) -> None:
        """Wait for the batch being applied; raise what failed it."""
        future, self._in_flight = self._in_flight, None
        if future is not None:
            # Kafka's informational commit is made here, by the thread that polls: librdkafka calls from
            # the worker while this thread serves a rebalance callback would wait on each other.
            self._commit_to_kafka(future.result())

    def _settle(self) -> None:
        """Wait for the batch being applied, without raising: a rebalance callback must not change the
        partitions, nor read the offsets, under a transaction in flight. A failure stays for the loop."""
        if self._in_flight is not None:
            wait([self._in_flight])

    def _poll(self, consumer: Consumer) -> list[Message]:
        """What arrives within ``linger_s`` of the first record, up to ``max_batch``: as a producer's
        linger does, a little latency buys batches that share a transaction's fixed cost."""
        first = consumer.poll(0.2)
        if first is None:
            return []
        messages = [first]
        if self.max_batch > 1:
            messages += consumer.consume(self.max_batch - 1, timeout=self.linger_s)
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                if message.partition() in self.positions:  # not of a partition revoked meanwhile
                    records.append(message)
            elif error.fatal():
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                self._problem("kafka", f"consumer: {error}")
        if self.on_lag:
            self.on_lag(self._lag(consumer))
        return since_last_seek(records)

    def _apply(self, batch: DecodedBatch) -> BatchApplied:
        started = time.perf_counter()
        advances = [PartitionAdvance(partition=p, expected=self.positions.get(p), next_offset=batch.next_offsets[p],
                                     valid=batch.valid_by_partition[p], rejected=batch.rejected_by_partition[p])
                    for p in sorted(batch.next_offsets)]
        for advance in advances:
            if advance.expected is not None and batch.first_offsets[advance.partition] < advance.expected:
                raise Fenced(f"{self.topic}[{advance.partition}]: records before the stored offset "
                             f"{advance.expected} were delivered")
        conn, schema = self._connected(), self.settings.gold_schema
        due = self.pending | TouchedLiveWindows.of(batch.events.column("ts"), live_horizon(self.settings))
        refresh_now = bool(due) and self._refresh_due()
        refreshed = TouchedLiveWindows()
        with conn.transaction():
            advance_offsets(conn, self.group, self.topic, advances, schema=schema)  # locks, or fences, first
            add_rejects(conn, self.group, self.topic, batch.rejected, schema=schema)
            # Retention is pruned with the windows' refresh, at most once a second, not every batch.
            applied = post_live_events(conn, self.settings, batch.events, windows=False, prune=refresh_now)
            if refresh_now:
                refreshed = refresh_windows(conn, self.settings, due)
        # Committed: only now does this consumer's view move on.
        self.pending = TouchedLiveWindows() if refresh_now else due
        if refresh_now:
            self._last_refresh = time.monotonic()
        for advance in advances:
            self.positions[advance.partition] = advance.next_offset
        result = BatchApplied(records=batch.records, valid=batch.events.num_rows, rejected=batch.rejected,
                              live=applied, windows_refreshed=len(refreshed.stats) + len(refreshed.trending),
                              seconds=batch.decode_seconds + time.perf_counter() - started,
                              next_offsets=batch.next_offsets)
        if self.on_batch:
            self.on_batch(result)
        return result

    def _refresh_due(self) -> bool:
        return time.monotonic() - self._last_refresh >= self.window_refresh_s

    def _refresh_alone(self) -> None:
        conn = self._connected()
        with conn.transaction():
            refresh_windows(conn, self.settings, self.pending)
        self.pending, self._last_refresh = TouchedLiveWindows(), time.monotonic()

    # Partitions -----------------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each assigned partition where Postgres says the last committed batch ended."""
        self._settle()
        try:
            stored = self._stored([p.partition for p in partitions])
            # A consumer that left the group may have stopped between its rows and their windows'
            # refresh: the survivors recompute every live window once.
            self.pending |= live_windows_held(self._connected(), live_horizon(self.settings),
                                              self.settings.gold_schema)
        except psycopg.OperationalError as error:  # Postgres down, or no connection since a failure
            # Assigned all the same (Kafka's informational offsets), but nothing is applied before the
            # loop has sought every partition to its stored offset.
            self._problem("postgres", f"reading the stored offsets on assignment: {str(error).strip()}")
            self._drop_connection()
            stored, self._rewind_needed = {}, True
        for p in partitions:
            if not self._rewind_needed:
                p.offset = stored.get(p.partition, OFFSET_BEGINNING)
            self.positions[p.partition] = stored.get(p.partition)
        consumer.assign(partitions)
        log.info("assigned %s[%s]", self.topic, ", ".join(
            f"{p.partition}@{'start' if p.offset == OFFSET_BEGINNING else p.offset}" for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle()  # the batch in flight commits (or fails) before another consumer takes over
        for p in partitions:
            self.positions.pop(p.partition, None)
        log.info("revoked %s[%s]", self.topic, ", ".join(str(p.partition) for p in partitions))

    def _stored(self, partitions: list[int]) -> dict[int, int]:
        return stored_offsets(self._connected(), self.group, self.topic, partitions, schema=self.settings.gold_schema)

    def _rewind(self) -> None:
        """Seek every assigned partition back to its stored offset (after a batch was rolled back)."""
        stored = self._stored(list(self.positions))
        assert self._consumer is not None  # run() made it before the loop that calls this
        for partition in list(self.positions):
            self.positions[partition] = stored.get(partition)
            offset = stored.get(partition, OFFSET_BEGINNING)
            try:
                self._consumer.seek(TopicPartition(self.topic, partition, offset))
            except KafkaException as error:  # not fetching yet: the assignment's own offset applies
                log.warning("seek %s[%d] to %s: %s", self.topic, partition, offset, error)

    def _commit_to_kafka(self, batch: BatchApplied) -> None:
        """Informational: lets Kafka's lag tools see the group's position. Postgres holds the truth."""
        assert self._consumer is not None  # run() made it before the loop that calls this
        try:
            self._consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in batch.next_offsets.items()],
                                  asynchronous=True)
        except KafkaException as error:
            log.debug("informational offset commit: %s", error)

    def _lag(self, consumer: Consumer) -> dict[int, int]:
        """Records behind the end of each assigned partition, from the watermarks the fetches carry."""
        lag = {}
        for partition, position in self.positions.items():
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                lag[partition] = max(0, high - (position or 0))
        return lag

    # Postgres -------------------------------------------------------------------------------------
    def _connection(self, stop: threading.Event) -> psycopg.Connection | None:
        """The Postgres connection, (re)made with a backoff until it works or ``stop`` is set."""
        attempt = 0
        while self._conn is None and not stop.is_set():
            try:
                self._conn = psycopg.connect(self.settings.postgres_dsn(), autocommit=True, connect_timeout=10,
                                             application_name=f"clickrec-speed-{self.group}")
                # A commit need not wait for its WAL flush: a server crash can only lose the latest
                # transactions whole, offsets included, and Kafka still has their records to apply again.
                self._conn.execute("SET synchronous_commit TO off")
            except psycopg.OperationalError as error:
                delay = _RECONNECT_BACKOFF_S[min(attempt, len(_RECONNECT_BACKOFF_S) - 1)]
                self._problem("postgres", f"connect: {str(error).strip()}; again in {delay}s")
                attempt += 1
                stop.wait(delay)
        return self._conn

    def _connected(self) -> psycopg.Connection:
        """The connection to Postgres; OperationalError while there is none (dropped after a failure)."""
        if self._conn is None:
            raise psycopg.OperationalError("no connection to Postgres (dropped after a failure)")
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _problem(self, kind: str, message: str) -> None:
        log.warning("%s", message)
        if self.on_problem:
            self.on_problem(kind)
