"""Errors of the DICOM network layer: each says which node, what failed, and what to check."""

from __future__ import annotations

from mfm_engine.errors import MFMError


class PacsError(MFMError):
    """A PACS operation failed or was refused."""


class NodeConfigError(PacsError):
    """A node address or the PACS config file is malformed."""


class PacsConnectionError(PacsError):
    """The node could not be reached, or it rejected or aborted the association."""


class RetrieveError(PacsError):
    """A retrieve did not bring every instance; nothing was left that looks complete."""


class StoreError(PacsError):
    """Sending instances to a node failed for some or all of them."""


class PacsCancelled(PacsError):
    """The caller cancelled a retrieve or a send; nothing partial was kept."""
