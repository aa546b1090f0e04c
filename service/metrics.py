"""Prometheus metrics of the API, aggregated over its gunicorn processes.

Two sources, joined at scrape time in :func:`render`:

- instruments the API processes update as they serve (predict latency, model cache
  hits and misses). Under ``trainserve api`` every process writes them to files in
  ``TRAINSERVE_PROMETHEUS_DIR`` (prometheus_client's multiprocess mode; the variable
  ``PROMETHEUS_MULTIPROC_DIR`` is set from it before the workers start) and a scrape
  answered by any process sums all of them. Without that directory (tests, a bare
  ``create_app``) they are this process's own.
- counts read from the database when scraped (:class:`DatabaseCollector`): jobs by
  status, the queue depth, and the histogram of epoch durations. The workers are other
  processes, often other machines, but every epoch they finish is a row with its
  duration, so the database is the one place that sees them all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from service.db.session import Database
from service.usecases import stats

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PREDICT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
EPOCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

# Created unregistered: each scrape builds its own registry (see render).
PREDICT_SECONDS = Histogram(
    "trainserve_predict_duration_seconds",
    "Time to answer a predict request, from after authentication to the response",
    ["endpoint"],
    buckets=PREDICT_BUCKETS,
    registry=None,
)
CACHE_HITS = Counter(
    "trainserve_model_cache_hits", "Predictions served by an already loaded model", registry=None
)
CACHE_MISSES = Counter(
    "trainserve_model_cache_misses",
    "Predictions that had to load a model from the database first",
    registry=None,
)
_INSTRUMENTS = (PREDICT_SECONDS, CACHE_HITS, CACHE_MISSES)


class DatabaseCollector:
    """Jobs by status, queue depth and epoch durations, read from the database per scrape."""

    # The queries run at most this often per process, however often /metrics (public)
    # is asked: a loop of requests cannot turn into a loop of table scans.
    REFRESH_SECONDS = 5.0
    _cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Database → reading
    _lock = threading.Lock()

    def __init__(self, database: Database):
        self.database = database

    def _read(self):
        with self._lock:
            now = time.monotonic()
            cached = self._cache.get(self.database)
            if cached is None or now - cached[0] >= self.REFRESH_SECONDS:
                counts = stats.jobs_by_status(self.database)
                durations = stats.epoch_durations(self.database, EPOCH_BUCKETS)
                self._cache[self.database] = cached = (now, counts, durations)
            return cached[1], cached[2]

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "trainserve_database_up", "1 if the database answered this scrape's queries"
        )
        try:
            counts, durations = self._read()
        except Exception:  # noqa: BLE001 - the process metrics are still worth a scrape
            log.exception("metrics: the database did not answer")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("trainserve_jobs", "Jobs by status", labels=["status"])
        for status, count in counts.items():
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily(
            "trainserve_queue_depth",
            "Jobs queued and not yet claimed by a worker",
            value=counts["queued"],
        )
        buckets = [(_bound(b), n) for b, n in zip(durations.bounds, durations.buckets, strict=True)]
        yield HistogramMetricFamily(
            "trainserve_epoch_duration_seconds",
            "Wall time of each finished training epoch (from the stored epoch rows)",
            buckets=[*buckets, ("+Inf", durations.count)],
            sum_value=durations.total,
        )


def render(database: Database) -> bytes:
    """The Prometheus text exposition of everything above."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        for instrument in _INSTRUMENTS:
            registry.register(instrument)
    registry.register(DatabaseCollector(database))
    return generate_latest(registry)


def _bound(value: float) -> str:
    return repr(float(value))
