"""MFM Studio on a DICOM network: PACS nodes, query / retrieve / store, and the translation node.

- `nodes`: a node written as ``AET@HOST:PORT`` or a DICOMweb URL, and the small config file that
  names nodes and our own AE title.
- `dimse`: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE with pynetdicom.
- `dicomweb`: QIDO-RS, WADO-RS and STOW-RS with dicomweb-client.
- `retrieve`: the cache folder and the staging / completeness-marker rules every retrieve follows.
- `jobs` and `node`: the translation node's SQLite job store and its storage SCP.

`connect(node)` gives the client for a node, whichever protocol it speaks.
"""

from __future__ import annotations

from mfm_engine.pacs.errors import (
    PacsCancelled,
    PacsConnectionError,
    PacsError,
    RetrieveError,
    StoreError,
)
from mfm_engine.pacs.nodes import Node, PacsConfig, load_config, parse_node, resolve_node
from mfm_engine.pacs.query import Query, SeriesMatch, StudyMatch

__all__ = [
    "Node",
    "PacsCancelled",
    "PacsConfig",
    "PacsConnectionError",
    "PacsError",
    "Query",
    "RetrieveError",
    "SeriesMatch",
    "StoreError",
    "StudyMatch",
    "connect",
    "load_config",
    "parse_node",
    "resolve_node",
]


def connect(node: Node, *, config: PacsConfig | None = None, **options):
    """The client for a node: `DimseClient` for ``AET@HOST:PORT``, `DicomWebClient` for a URL."""
    cfg = config or load_config()
    if node.is_dicomweb:
        from mfm_engine.pacs.dicomweb import DicomWebClient

        # AE titles and the C-MOVE listener mean nothing over HTTP.
        return DicomWebClient(node, timeout=options.get("timeout", cfg.timeout_s))
    from mfm_engine.pacs.dimse import DimseClient

    options.setdefault("calling_ae", cfg.calling_ae)
    options.setdefault("timeout", cfg.timeout_s)
    options.setdefault("move_port", cfg.move_port)
    options.setdefault("move_host", cfg.move_host)
    return DimseClient(node, **options)
