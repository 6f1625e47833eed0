"""DICOM nodes: ``AET@HOST:PORT`` (DIMSE) or a DICOMweb URL, and the PACS config file that names them.

The config file is JSON at ``$XDG_CONFIG_HOME/mfm-studio/pacs.json`` (``~/.config/...`` when the
variable is unset), or wherever ``MFM_PACS_CONFIG`` points. Every key is optional::

    {
      "calling_ae": "MFM",                       # our own AE title
      "default_node": "orthanc",
      "nodes": {"orthanc": "ORTHANC@127.0.0.1:4242",
                "orthanc-web": "http://127.0.0.1:8042/dicom-web"},
      "move_port": 11113,                        # where our storage SCP listens during a C-MOVE
      "move_host": "0.0.0.0",
      "cache_dir": "/data/mfm-cache",            # retrieved series; default $XDG_CACHE_HOME/mfm-studio/pacs
      "timeout_s": 30
    }

Command-line flags override the file; the file is never required.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mfm_engine.pacs.errors import NodeConfigError

CONFIG_ENV = "MFM_PACS_CONFIG"
APP_DIR = "mfm-studio"
DEFAULT_CALLING_AE = "MFM"
DEFAULT_MOVE_PORT = 11113
DEFAULT_TIMEOUT_S = 30.0

_NODE_RE = re.compile(r"^(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:@\[\]\s]+):(?P<port>[0-9]+)$")
EXAMPLE = "ORTHANC@127.0.0.1:4242 or http://127.0.0.1:8042/dicom-web"


def validate_ae_title(text: str, what: str = "AE title") -> str:
    """The AE title without padding; NodeConfigError unless 1–16 printable ASCII characters, no backslash."""
    aet = str(text).strip()
    if not aet:
        raise NodeConfigError(f"{what} is empty; an AE title has 1 to 16 characters, e.g. MFM")
    if len(aet) > 16:
        raise NodeConfigError(f"{what} {aet!r} is {len(aet)} characters long; DICOM allows at most 16")
    if any(not (32 <= ord(c) < 127) or c == "\\" for c in aet):
        raise NodeConfigError(
            f"{what} {aet!r} holds a character DICOM forbids (only printable ASCII, no backslash)"
        )
    return aet


@dataclass(frozen=True)
class Node:
    """A remote DICOM node: DIMSE (AE title, host, port) or DICOMweb (base URL)."""

    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""
    name: str = ""  # its name in the config file, when it came from there

    @property
    def is_dicomweb(self) -> bool:
        """True for a DICOMweb node (QIDO/WADO/STOW), False for DIMSE."""
        return bool(self.url)

    @property
    def address(self) -> str:
        """``AET@HOST:PORT`` or the URL, as a user writes it."""
        if self.url:
            return self.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.name} ({self.address})" if self.name else self.address


def parse_node(text: str, name: str = "") -> Node:
    """Parse ``AET@HOST:PORT`` (IPv6 host in brackets) or an ``http(s)://`` DICOMweb base URL."""
    raw = str(text).strip()
    label = f"node {name!r}" if name else "node"
    if raw.lower().startswith(("http://", "https://")):
        parts = urlsplit(raw)
        if not parts.hostname:
            raise NodeConfigError(f"{label} {raw!r}: the URL has no host; write it like {EXAMPLE}")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise NodeConfigError(f"{label} {raw!r}: bad port in the URL ({exc})") from exc
        return Node(url=raw.rstrip("/"), name=name)
    match = _NODE_RE.match(raw)
    if not match:
        raise NodeConfigError(
            f"{label} {raw!r} is not AET@HOST:PORT or a DICOMweb URL; write it like {EXAMPLE}"
        )
    aet = validate_ae_title(match["aet"], f"{label} {raw!r}: AE title")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise NodeConfigError(f"{label} {raw!r}: port {port} is outside 1..65535")
    host = match["host"].strip("[]")
    return Node(ae_title=aet, host=host, port=port, name=name)


def config_path() -> Path:
    """Where the PACS config file lives ($MFM_PACS_CONFIG, else the user's config folder)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP_DIR / "pacs.json"


def default_cache_dir() -> Path:
    """Where retrieved series go unless told otherwise ($XDG_CACHE_HOME/mfm-studio/pacs)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_DIR / "pacs"


@dataclass
class PacsConfig:
    """The PACS settings: our AE title, named nodes, the default node, C-MOVE listener, cache, timeout."""

    calling_ae: str = DEFAULT_CALLING_AE
    default_node: str = ""
    nodes: dict[str, str] = field(default_factory=dict)
    move_port: int = DEFAULT_MOVE_PORT
    move_host: str = "0.0.0.0"
    cache_dir: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S
    path: Path | None = None  # the file it was read from

    @property
    def cache(self) -> Path:
        """The cache folder (configured, or the default under the user's cache folder)."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def node(self, name: str) -> Node:
        """The named node, parsed; NodeConfigError naming the file when it is unknown or malformed."""
        if name not in self.nodes:
            known = ", ".join(sorted(self.nodes)) or "none"
            raise NodeConfigError(f"{self.path or config_path()}: no node named {name!r} (known: {known})")
        return parse_node(self.nodes[name], name=name)

    def to_json(self) -> dict[str, Any]:
        """The file's content (without the path)."""
        doc = asdict(self)
        doc.pop("path")
        return doc


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "calling_ae": (str,),
    "default_node": (str,),
    "nodes": (dict,),
    "move_port": (int,),
    "move_host": (str,),
    "cache_dir": (str,),
    "timeout_s": (int, float),
}


def load_config(path: str | os.PathLike[str] | None = None) -> PacsConfig:
    """Read the PACS config file; defaults when it does not exist; NodeConfigError when it is malformed."""
    target = Path(path) if path else config_path()
    if not target.exists():
        return PacsConfig(path=target)
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeConfigError(f"{target}: cannot read the PACS config file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise NodeConfigError(f"{target}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(doc, dict):
        raise NodeConfigError(f"{target}: the PACS config must be a JSON object")
    unknown = sorted(set(doc) - set(_FIELD_TYPES))
    if unknown:
        raise NodeConfigError(
            f"{target}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_FIELD_TYPES)}"
        )
    for key, value in doc.items():
        types = _FIELD_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise NodeConfigError(f"{target}: {key} must be a {types[0].__name__}, got {value!r}")
    cfg = PacsConfig(**doc, path=target)
    cfg.calling_ae = validate_ae_title(cfg.calling_ae, f"{target}: calling_ae")
    for name, address in cfg.nodes.items():
        if not isinstance(address, str):
            raise NodeConfigError(f"{target}: node {name!r} must be a string like {EXAMPLE}")
        try:
            parse_node(address, name=name)
        except NodeConfigError as exc:
            raise NodeConfigError(f"{target}: {exc}") from exc
    if cfg.default_node and cfg.default_node not in cfg.nodes:
        raise NodeConfigError(f"{target}: default_node {cfg.default_node!r} is not among the nodes")
    if not 1 <= cfg.move_port <= 65535:
        raise NodeConfigError(f"{target}: move_port {cfg.move_port} is outside 1..65535")
    if cfg.timeout_s <= 0:
        raise NodeConfigError(f"{target}: timeout_s must be positive")
    return cfg


def save_config(cfg: PacsConfig, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the config file atomically (folder created as needed); returns its path."""
    target = Path(path) if path else (cfg.path or config_path())
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cfg.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise NodeConfigError(f"{target}: cannot write the PACS config file: {exc.strerror or exc}") from exc
    cfg.path = target
    return target


def resolve_node(text: str | None, config: PacsConfig | None = None) -> Node:
    """A node from a flag: a configured name, ``AET@HOST:PORT``, a URL, or (None) the default node."""
    cfg = config or load_config()
    if not text:
        if cfg.default_node:
            return cfg.node(cfg.default_node)
        raise NodeConfigError(
            f"no node given: pass --node AET@HOST:PORT (e.g. {EXAMPLE.split(' or ')[0]}) "
            f"or set default_node in {cfg.path or config_path()}"
        )
    if text in cfg.nodes:
        return cfg.node(text)
    if "@" in text or "://" in text:
        return parse_node(text)
    known = ", ".join(sorted(cfg.nodes)) or "none configured"
    raise NodeConfigError(
        f"node {text!r} is neither AET@HOST:PORT, a DICOMweb URL, nor a name in "
        f"{cfg.path or config_path()} (known: {known})"
    )
