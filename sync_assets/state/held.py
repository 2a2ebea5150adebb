"""A sync's stored fingerprints held in memory for one pass that reads every record.

A read of every record (`syncMode: full`, `--full-refresh`, an incremental sync read from
the start over state it has) asks the state for the fingerprint of every key it reads. A
query a page costs an index probe a key: at 800,000 records 13 s on PostgreSQL, most of a
rerun with nothing changed. One scan of the sync's state rows instead, held as 64-bit
hashes of key and fingerprint sorted by key (17 bytes a record), tells a page's records
held unchanged and those the state does not hold; only a key whose hash it holds with
another fingerprint is asked of the state itself.

The hashes are Python's own `hash` of the texts: the snapshot lives and dies in one
process, so a per-process seed is no matter. Two keys sharing a hash only cost an exact
lookup; a record taken for held unchanged needs a 64-bit collision of its key and one of
its fingerprint at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lookup:
    """What the snapshot tells of a page's records: `created[i]` is the state's `created`
    flag where record i is held with its fingerprint, else None; `ask` are the records
    whose key the state may hold with another fingerprint (to be looked up exactly).
    A record neither held nor asked is one the state did not hold."""

    created: list[bool | None]
    ask: list[int]


class HeldFingerprints:
    """The (key, fingerprint, created) rows of a sync's state, as sorted hashes."""

    def __init__(self, keys: np.ndarray, fingerprints: np.ndarray, created: np.ndarray):
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._fps = fingerprints[order]
        self._created = created[order]

    @classmethod
    def scanned(cls, chunks: Iterable[Sequence[tuple[str, str, bool]]],
                limit: int) -> HeldFingerprints | None:
        """The snapshot of rows given in chunks, or None past `limit` rows (the state is
        then asked page by page, in bounded memory)."""
        return cls.scanned_columns(
            ((tuple(r[0] for r in chunk), tuple(r[1] for r in chunk),
              tuple(bool(r[2]) for r in chunk)) for chunk in chunks), limit)

    @classmethod
    def scanned_columns(cls, chunks: Iterable[tuple[Sequence[str], Sequence[str],
                                                    Sequence[bool]]],
                        limit: int) -> HeldFingerprints | None:
        """`scanned` of chunks given as columns: (keys, fingerprints, created flags)."""
        keys: list[np.ndarray] = []
        fps: list[np.ndarray] = []
        created: list[np.ndarray] = []
        count = 0
        for chunk_keys, chunk_fps, chunk_created in chunks:
            n = len(chunk_keys)
            count += n
            if count > limit:
                return None
            keys.append(np.fromiter(map(hash, chunk_keys), np.int64, n))
            fps.append(np.fromiter(map(hash, chunk_fps), np.int64, n))
            created.append(np.asarray(chunk_created, np.bool_))
        if not keys:
            empty = np.empty(0, np.int64)
            return cls(empty, empty, np.empty(0, np.bool_))
        whole = np.concatenate(keys), np.concatenate(fps), np.concatenate(created)
        del keys, fps, created  # the chunks go before the sort copies the whole
        return cls(*whole)

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, keys: Sequence[str], fingerprints: Sequence[str]) -> Lookup:
        n = len(keys)
        if not len(self._keys) or not n:
            return Lookup([None] * n, [])
        wanted = np.fromiter(map(hash, keys), np.int64, n)
        at = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
        present = self._keys[at] == wanted
        fps = np.fromiter(map(hash, fingerprints), np.int64, n)
        held = present & (self._fps[at] == fps)
        created = self._created[at]
        flags = [bool(c) if h else None for h, c in zip(held.tolist(), created.tolist(),
                                                         strict=True)]
        return Lookup(flags, np.flatnonzero(present & ~held).tolist())
