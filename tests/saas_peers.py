"""The contract suite's peers for web APIs served by validating fakes (tests/fake_api.py): each
lives in its own module `tests/peer_<system>.py`, which defines `PEER_NAME` and
`make_peer(request, tmp_path)`, a context manager yielding a peer with the interface of
contract_peers.MemoryPeer (settings, create, rows, change, faults, people, transactional).
A peer module found here joins every test of tests/test_contract.py."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def _found() -> dict[str, Callable[..., Any]]:
    peers: dict[str, Callable[..., Any]] = {}
    for module in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda m: m.name):
        if module.name.startswith("peer_"):
            loaded = importlib.import_module(module.name)
            peers[loaded.PEER_NAME] = loaded.make_peer
    return peers


SAAS_PEERS = _found()
