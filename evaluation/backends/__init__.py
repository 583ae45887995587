"""Model backends: a batch of conversations in, one ``Result`` per conversation out.

``get_backend(config, cache_key)`` returns a backend for an endpoint, keeping the last two in a
small LRU cache so a worker loads a model once per endpoint version (the caller passes the
endpoint id + its last change as ``cache_key``). Evicting a backend frees its model.

Backends are imported lazily: a worker that only talks HTTP never imports torch.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

from .base import Backend, BackendConfig, Message, Result

__all__ = ["Backend", "BackendConfig", "Message", "Result", "clear_cache", "expected_score", "get_backend"]

MAX_CACHED_BACKENDS = 2

_cache: OrderedDict[tuple[str, BackendConfig], Backend] = OrderedDict()
_cache_lock = threading.Lock()


def build_backend(config: BackendConfig) -> Backend:
    """A fresh backend for ``config`` (loads the model for ``transformers``)."""
    if config.backend == "transformers":
        from .transformers_backend import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    raise ValueError(f"unknown backend {config.backend!r}: expected 'transformers' or 'openai'")


def get_backend(config: BackendConfig, cache_key: str | None = None) -> Backend:
    """The backend for ``config``; with a ``cache_key``, reused while it stays among the last
    ``MAX_CACHED_BACKENDS`` used. The config is part of the key too, so a caller that changes
    settings without changing the key still never gets a backend built from other settings."""
    if cache_key is None:
        return build_backend(config)
    key = (cache_key, config)
    # One lock for lookup and load: two threads asking for the same model must not load it twice
    # (a GPU worker runs one task at a time anyway, so nobody waits in practice).
    with _cache_lock:
        backend = _cache.get(key)
        if backend is not None:
            _cache.move_to_end(key)
            return backend
        # Evict before loading, so two big models never sit in GPU memory with a third arriving.
        while len(_cache) >= MAX_CACHED_BACKENDS:
            _, evicted = _cache.popitem(last=False)
            _close(evicted)
        backend = build_backend(config)
        _cache[key] = backend
        return backend


def clear_cache() -> None:
    """Drop every cached backend and free what they hold (tests, worker shutdown)."""
    with _cache_lock:
        while _cache:
            _close(_cache.popitem(last=False)[1])


def _close(backend: Backend) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def expected_score(probs: dict[int, float]) -> tuple[float, float]:
    """The probability-weighted mean rating and its standard deviation.

    ``probs`` maps ratings 1..10 to probabilities; it is renormalised here so rounding in stored
    values cannot push the mean outside [1, 10].
    """
    items = [(int(k), float(p)) for k, p in probs.items() if 1 <= int(k) <= 10 and p > 0]
    total = sum(p for _, p in items)
    if not items or not math.isfinite(total) or total <= 0:
        raise ValueError("no probability mass on ratings 1..10")
    mean = sum(k * p for k, p in items) / total
    variance = sum(p * (k - mean) ** 2 for k, p in items) / total
    return min(10.0, max(1.0, mean)), math.sqrt(max(0.0, variance))
