"""The produce loop: encode each batch once, send what is due, sleep until the next is, flush.

SIGTERM or Ctrl-C stops taking new events; everything already accepted is flushed and counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from clickrec_platform.events.batch import encode_batch
from clickrec_platform.ops.lifecycle import stop_on_signals
from clickrec_platform.producer.kafka_sink import KafkaEventSink, event_type_codes
from clickrec_platform.producer.pacing import FastPacer, Pacer, due_slices
from clickrec_platform.settings import Settings
from clickrec_platform.sources.generator import GeneratorConfig, generate_events, write_catalogue_files

# Sent between checks of the clock and of a stop request: small enough to stop promptly.
MAX_SLICE = 50_000
# The final flush outlasts the delivery timeout by this much, so librdkafka itself fails what it could not deliver
# (each message reported with its own reason) rather than the flush giving up first and purging it.
FLUSH_MARGIN_S = 5.0


@dataclass
class ProduceSummary:
    topic: str
    accepted: int
    failed: int
    failed_by_reason: dict[str, int]
    source_rejected: int
    seconds: float
    stopped_early: bool
    dead_letter_path: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def delivered(self) -> int:
        return self.accepted - self.failed

    @property
    def events_per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "accepted": self.accepted, "delivered": self.delivered,
                "failed": self.failed, "failed_by_reason": self.failed_by_reason,
                "source_rejected": self.source_rejected, "seconds": round(self.seconds, 3),
                "events_per_second": round(self.events_per_second),
                "stopped_early": self.stopped_early,
                "dead_letter_path": str(self.dead_letter_path) if self.failed else None, **self.extra}


def _limited(frames: Iterable[pd.DataFrame], limit: int | None) -> Iterator[pd.DataFrame]:
    taken = 0
    for frame in frames:
        if limit is not None:
            if taken >= limit:
                return
            frame = frame.iloc[: limit - taken]
        taken += len(frame)
        yield frame


def _in_due_order(keys: list[bytes], values: list[bytes], codes: np.ndarray | None, due: np.ndarray):
    if len(due) < 2 or bool(np.all(due[1:] >= due[:-1])):
        return keys, values, codes, due
    order = np.argsort(due, kind="stable")
    return ([keys[i] for i in order], [values[i] for i in order], None if codes is None else codes[order],
            due[order])


def _encoded_ahead(frames: Iterable[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, list[bytes], list[bytes]]]:
    """Frames with their Kafka bytes, the next frame encoded on a thread while this one is sent
    (Arrow's kernels release the GIL, so encoding and sending overlap on two cores)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        pending = None
        for frame in frames:
            if frame.empty:
                continue
            upcoming = (frame, pool.submit(encode_batch, frame))
            if pending is not None:
                yield pending[0], *pending[1].result()
            pending = upcoming
        if pending is not None:
            yield pending[0], *pending[1].result()


def produce_frames(
    frames: Iterable[pd.DataFrame],
    sink: KafkaEventSink,
    pacer: Pacer,
    *,
    limit: int | None = None,
    stop: threading.Event | None = None,
    progress: bool = True,
    flush_timeout_s: float | None = None,
    source_rejected: Callable[[], int] = lambda: 0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
) -> ProduceSummary:
    """Send ``frames`` as ``pacer`` schedules them. Waits go to ``sleep`` (default: the sink's own wait,
    which serves delivery reports meanwhile, so a paced producer's acknowledgements are counted as they
    come). The final flush waits as long as a message may take to be delivered (``sink.delivery_timeout_s``,
    librdkafka's ``message.timeout.ms``) unless ``flush_timeout_s`` says otherwise: a broker that is back
    within that time still gets every event sent just before the end."""
    stop = stop or threading.Event()
    if flush_timeout_s is None:
        flush_timeout_s = getattr(sink, "delivery_timeout_s", 60.0) + FLUSH_MARGIN_S
    wait: Callable[[float], None] = sleep if sleep is not None else getattr(sink, "wait", time.sleep)
    tracked = getattr(sink, "tracks_deliveries", False)
    started = clock()
    with stop_on_signals(stop), tqdm(unit="ev", unit_scale=True, disable=not progress,
                                     desc=f"→ {sink.topic}", smoothing=0.1) as bar:
        for frame, keys, values in _encoded_ahead(_limited(frames, limit)):
            if stop.is_set():
                break
            codes = event_type_codes(frame["event"]) if tracked else None
            due = pacer.due_seconds(frame["ts"].to_numpy())
            keys, values, codes, due = _in_due_order(keys, values, codes, due)
            position = 0
            while position < len(due) and not stop.is_set():
                elapsed = clock() - started
                end = due_slices(due, elapsed, position)
                if end == position:
                    wait(min(due[position] - elapsed, 0.2))
                    continue
                end = min(end, position + MAX_SLICE)
                sink.send(keys[position:end], values[position:end],
                          None if codes is None else codes[position:end])
                bar.update(end - position)
                position = end
        sink.flush(flush_timeout_s)
    sink.close()
    return ProduceSummary(
        topic=sink.topic, accepted=sink.accepted, failed=sink.failed,
        failed_by_reason=dict(sink.failed_by_reason), source_rejected=source_rejected(),
        seconds=clock() - started, stopped_early=stop.is_set(), dead_letter_path=sink.dead_letter_path,
    )


def produce_generated(settings: Settings, config: GeneratorConfig, pacer: Pacer | None = None, *,
                      progress: bool = True, stop: threading.Event | None = None) -> ProduceSummary:
    """Generated events to the settings' topic (as `clickrec demo` and the benchmarks send them).

    The catalogue of the same world goes to the reference folder first (unless RETAILROCKET_DIR is
    set), so the reference assets describe the items these events name.
    """
    if settings.retailrocket_dir is None:
        write_catalogue_files(config, settings.catalogue_dir)
    sink = KafkaEventSink(settings, settings.kafka_topic,
                          settings.state_dir / "producer" / f"dead-letter-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
    return produce_frames(generate_events(config), sink, pacer or FastPacer(), progress=progress, stop=stop)
