"""Model versions: list, read, and predict with a per-process cache of loaded models.

The predict path touches the database only on a cache miss: loaded models are kept per
process by their immutable version id, and the resolution of a name to a version is kept
too — for an explicit version number until evicted (a version never changes), for "the
latest version" for at most ``resolve_ttl`` seconds (``TRAINSERVE_MODEL_RESOLVE_TTL_SECONDS``,
default 1): a newly published version is served by every API process within that bound.
A resolution past half its time is looked up again by a thread of its own while the
requests go on with it, so under steady traffic no predict waits for the database (those
lookups were the slowest 1-row predicts: 7-9 ms against a 1.6 ms median, and 12-110 ms
while an upload kept PostgreSQL busy).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from service.db.models import ModelVersion
from service.db.session import Database
from service.metrics import CACHE_HITS, CACHE_MISSES
from service.ml.inference import ModelBundle
from service.storage import BlobCorrupt, storage
from service.usecases.errors import CorruptModel, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSummary:
    name: str
    latest_version: int
    n_versions: int
    updated_at: Any


@dataclass(frozen=True)
class Prediction:
    """What predict returns: the version used, its classes, and per-row results."""

    name: str
    version: int
    classes: list[Any]
    labels: list[Any]
    probabilities: Any  # ndarray (rows, classes)
    ignored: tuple[str, ...] = ()  # columns read and not used (the model's target)


class ModelCache:
    """A bounded LRU of loaded models, keyed by the immutable version id, and the recent
    resolutions of (tenant, name, version or latest) to a version row."""

    RESOLUTIONS = 4096  # entries kept before the resolution map starts over

    def __init__(self, size: int, resolve_ttl: float = 1.0):
        self.size = max(1, size)
        self.resolve_ttl = resolve_ttl
        self._items: OrderedDict[str, ModelBundle] = OrderedDict()
        self._resolved: dict[tuple, tuple[ModelVersion, float]] = {}
        self._refreshing: set[tuple] = set()  # keys being looked up ahead of their expiry
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def resolve(self, key: tuple, lookup, *, immutable: bool) -> ModelVersion:
        """The version row for ``key``: cached, else ``lookup()`` (whose errors pass through).

        A mutable resolution past half its time is returned as it is, and ``lookup()``
        runs again in a thread of its own (one per key at a time); its answer, or its
        error's absence, renews the entry from the moment it started. An error there
        leaves the entry to expire, and the first request after that looks up itself
        (and answers the error)."""
        now = time.monotonic()
        cached = self._resolved.get(key)
        if cached is not None:
            found, expires = cached
            if immutable:
                return found
            if expires > now:
                if expires - now < self.resolve_ttl / 2:
                    self._refresh_ahead(key, lookup)
                return found
        found = lookup()
        if immutable or self.resolve_ttl > 0:
            self._remember(key, found, now)
        return found

    def known(self, key: tuple) -> Any:
        """What ``key`` resolved to last, expired or not (``None``: nothing yet)."""
        cached = self._resolved.get(key)
        return cached[0] if cached is not None else None

    def _remember(self, key: tuple, found: ModelVersion, looked_up_at: float) -> None:
        with self._lock:
            if len(self._resolved) >= self.RESOLUTIONS:
                self._resolved.clear()
            self._resolved[key] = (found, looked_up_at + self.resolve_ttl)

    def _refresh_ahead(self, key: tuple, lookup) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def refresh() -> None:
            started = time.monotonic()
            try:
                found = lookup()
            except Exception as exc:  # noqa: BLE001 - the entry expires; a request retries
                log.debug("looking up %r ahead of its expiry failed: %s", key, exc)
            else:
                self._remember(key, found, started)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=refresh, name="model-resolve", daemon=True).start()

    def get(self, key: str) -> ModelBundle | None:
        with self._lock:
            bundle = self._items.get(key)
            if bundle is None:
                self.misses += 1
                CACHE_MISSES.inc()
                return None
            self._items.move_to_end(key)
            self.hits += 1
            CACHE_HITS.inc()
            return bundle

    def put(self, key: str, bundle: ModelBundle) -> None:
        with self._lock:
            self._items[key] = bundle
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def list_models(db: Database, tenant: str) -> list[ModelSummary]:
    """One entry per model name of the tenant, alphabetically."""
    with db.transaction() as session:
        rows = session.execute(
            select(
                ModelVersion.name,
                func.max(ModelVersion.version),
                func.count(),
                func.max(ModelVersion.created_at),
            )
            .where(ModelVersion.tenant == tenant)
            .group_by(ModelVersion.name)
            .order_by(ModelVersion.name)
        ).all()
    return [ModelSummary(name, latest, count, updated) for name, latest, count, updated in rows]


def list_versions(db: Database, tenant: str, name: str) -> list[ModelVersion]:
    """The versions of a model, newest first."""
    with db.transaction() as session:
        versions = list(
            session.scalars(
                select(ModelVersion)
                .where(ModelVersion.tenant == tenant, ModelVersion.name == name)
                .order_by(ModelVersion.version.desc())
            )
        )
    if not versions:
        raise NotFound(f"no model named {name!r}")
    return versions


def get_version(
    db: Database,
    tenant: str,
    name: str,
    version: int | None = None,
    *,
    known: ModelVersion | None = None,
) -> ModelVersion:
    """One version, or the latest when ``version`` is ``None``.

    With ``known`` (the row this process already holds for the same question) the latest
    is looked up by its id alone, and ``known`` itself is returned while it still is the
    latest: a row carries the model's description and metrics, JSON of up to hundreds of
    KB for the default recipe, and reading it again every second per model stalled the
    serving thread (the GIL) for a few ms now and then (bench/README.md)."""
    where = (ModelVersion.tenant == tenant, ModelVersion.name == name)
    with db.transaction() as session:
        if version is None and known is not None:
            latest = session.scalar(
                select(ModelVersion.id).where(*where).order_by(ModelVersion.version.desc()).limit(1)
            )
            if latest == known.id:
                return known
            found = session.get(ModelVersion, latest) if latest is not None else None
        else:
            query = select(ModelVersion).where(*where)
            if version is None:
                query = query.order_by(ModelVersion.version.desc()).limit(1)
            else:
                query = query.where(ModelVersion.version == version)
            found = session.scalar(query)
    if found is None:
        which = f"version {version} of model" if version is not None else "model"
        raise NotFound(f"no {which} {name!r}")
    return found


def resolve_version(
    db: Database, cache: ModelCache, tenant: str, name: str, version: int | None
) -> ModelVersion:
    """:func:`get_version` through the cache (see the module's docstring for the bound)."""
    key = (tenant, name, version)
    return cache.resolve(
        key,
        lambda: get_version(db, tenant, name, version, known=cache.known(key)),
        immutable=version is not None,
    )


def predict(
    db: Database,
    cache: ModelCache,
    tenant: str,
    name: str,
    version: int | None,
    rows: pd.DataFrame | list,
    *,
    max_columns: int = 1_000,
    max_cell_chars: int = 10_000,
) -> Prediction:
    """Class probabilities for each row: a frame of cells as text, or JSON records."""
    found = resolve_version(db, cache, tenant, name, version)
    bundle = loaded(db, cache, found)
    rows, ignored = without_target(rows, found.target)
    if isinstance(rows, pd.DataFrame):
        probabilities = bundle.predict_proba(rows)
    else:
        probabilities = bundle.predict_records(
            rows, max_columns=max_columns, max_cell_chars=max_cell_chars
        )
    return Prediction(
        name=found.name,
        version=found.version,
        classes=list(bundle.classes),
        labels=bundle.labels(probabilities),
        probabilities=probabilities,
        ignored=ignored,
    )


def without_target(rows: pd.DataFrame | list, target: str) -> tuple[Any, tuple[str, ...]]:
    """Rows without the model's target column, and ``(target,)`` if it was there.

    A labelled file (the table the model was trained on, or a test split of it) can be
    scored as it is: the labels are not features, so they are set aside, never refused.
    """
    if isinstance(rows, pd.DataFrame):
        if target in rows.columns:
            return rows.drop(columns=[target]), (target,)
        return rows, ()
    if type(rows) is list and any(type(r) is dict and target in r for r in rows):
        stripped = [
            {k: v for k, v in r.items() if k != target} if type(r) is dict else r for r in rows
        ]
        return stripped, (target,)
    return rows, ()


def stored_weights(db: Database, found: ModelVersion) -> bytes:
    """The version's safetensors bytes, checked against their SHA-256."""
    try:
        with db.transaction() as session:
            weights = storage(session, db).get(found.weights_key)
    except BlobCorrupt:
        weights = b""  # refused below, like weights whose SHA-256 differs
    digest = hashlib.sha256(weights).hexdigest()
    if digest != found.weights_sha256:
        raise CorruptModel(
            f"the stored weights of {found.name} version {found.version} do not match their "
            "SHA-256; they were not loaded"
        )
    return weights


def loaded(db: Database, cache: ModelCache, found: ModelVersion) -> ModelBundle:
    """The version's model from the cache, loaded (and cached) on a miss."""
    bundle = cache.get(found.id)
    if bundle is None:
        bundle = _load(db, found)
        cache.put(found.id, bundle)
    return bundle


def _load(db: Database, found: ModelVersion) -> ModelBundle:
    return load_bundle(found, stored_weights(db, found))


def load_bundle(found: ModelVersion, weights: bytes) -> ModelBundle:
    """The version's model from its checked weights (a new object, not the cache's)."""
    try:
        return ModelBundle.load(found.description, weights)
    except Exception as exc:  # safetensors refuses anything that is not safetensors
        raise CorruptModel(
            f"the stored weights of {found.name} version {found.version} cannot be read as "
            f"safetensors ({type(exc).__name__}); they were not loaded"
        ) from None
