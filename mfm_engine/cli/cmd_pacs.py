"""`mfm pacs echo|find|get|send|nodes`: talk to a PACS (DIMSE ``AET@HOST:PORT`` or a DICOMweb URL).

``--node`` takes ``AET@HOST:PORT``, a DICOMweb URL, or a name from the PACS config file (see
docs/pacs.md); without it the config's default node is used. ``get`` writes a DICOM folder that
``mfm info`` and the viewer open, and prints its path; a retrieve that does not complete leaves
nothing that looks complete. Exit status 0 on success, 2 on any error (one plain line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node",
        metavar="NODE",
        help="AET@HOST:PORT, a DICOMweb URL, or a configured node name (default: the config's)",
    )
    parser.add_argument(
        "--calling-ae", metavar="AET", help="our own AE title (default: the config's, else MFM)"
    )
    parser.add_argument("--timeout", type=float, metavar="S", help="network timeout in seconds (default 30)")
    parser.add_argument("--config", metavar="FILE", help="PACS config file (default: see docs/pacs.md)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `pacs` subcommand and its actions."""
    parser = subparsers.add_parser(
        "pacs",
        help="query, retrieve and send over DICOM (C-ECHO/FIND/GET/MOVE/STORE) or DICOMweb",
        description="Talk to a PACS: echo, find studies/series, get (retrieve) a series or study, send a "
        "series. Nodes: AET@HOST:PORT (DIMSE), http(s)://… (DICOMweb), or a name from the config file.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    echo = actions.add_parser("echo", help="check the node answers (C-ECHO / a QIDO-RS request)")
    _common(echo)
    echo.set_defaults(func=run_echo)

    find = actions.add_parser("find", help="find studies (and their series)")
    _common(find)
    find.add_argument("--patient-id", default="", metavar="ID")
    find.add_argument("--patient-name", default="", metavar="NAME", help="wildcards allowed: 'DOE^*'")
    find.add_argument(
        "--date", default="", metavar="RANGE", help="study date: YYYYMMDD, YYYYMMDD-YYYYMMDD, A-, -B"
    )
    find.add_argument("--modality", default="", metavar="MOD", help="e.g. CT (modalities in study)")
    find.add_argument("--accession", default="", metavar="ACC")
    find.add_argument("--study", default="", metavar="UID", help="one Study Instance UID")
    find.add_argument("--series", action="store_true", help="also list each study's series")
    find.add_argument("--json", action="store_true", help="print JSON: {node, studies: [{…, series: […]}]}")
    find.set_defaults(func=run_find)

    get = actions.add_parser("get", help="retrieve a series (or a whole study) into a DICOM folder")
    _common(get)
    get.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    get.add_argument(
        "--series", metavar="UID", help="Series Instance UID (default: every series of the study)"
    )
    get.add_argument(
        "--method", choices=("get", "move"), default="get", help="DIMSE: C-GET (default) or C-MOVE"
    )
    get.add_argument(
        "--move-port", type=int, metavar="P", help="our storage SCP's port for C-MOVE (config move_port)"
    )
    get.add_argument(
        "--out", metavar="DIR", help="target folder (default: the cache, <cache>/<study>/<series>)"
    )
    get.add_argument(
        "--cache", metavar="DIR", help="cache folder (default: config cache_dir or ~/.cache/mfm-studio/pacs)"
    )
    get.add_argument(
        "--overwrite", action="store_true", help="retrieve again over a complete earlier retrieve"
    )
    get.add_argument("--quiet", action="store_true", help="no progress bar")
    get.set_defaults(func=run_get)

    send = actions.add_parser("send", help="send DICOM files or folders (e.g. an exported synthetic series)")
    _common(send)
    send.add_argument(
        "paths", nargs="+", metavar="PATH", help="DICOM files or folders (searched recursively)"
    )
    send.add_argument("--quiet", action="store_true", help="no progress bar")
    send.set_defaults(func=run_send)

    nodes = actions.add_parser("nodes", help="list, add or remove named nodes in the config file")
    nodes.add_argument("--config", metavar="FILE", help="PACS config file (default: see docs/pacs.md)")
    nodes.add_argument(
        "--add",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "NODE"),
        help="add or replace a named node",
    )
    nodes.add_argument("--remove", metavar="NAME", help="remove a named node")
    nodes.add_argument("--default", metavar="NAME", help="make a named node the default")
    nodes.add_argument("--calling-ae", metavar="AET", help="set our own AE title")
    nodes.set_defaults(func=run_nodes)


def _quiet_network_logs() -> None:
    # pynetdicom logs every failure itself; our errors already say what happened, in one line.
    logging.getLogger("pynetdicom").propagate = False


def _client(args: argparse.Namespace, **options: Any):
    from mfm_engine.pacs import connect
    from mfm_engine.pacs.nodes import load_config, resolve_node

    _quiet_network_logs()
    cfg = load_config(args.config)
    node = resolve_node(args.node, cfg)
    if args.calling_ae and not node.is_dicomweb:
        options["calling_ae"] = args.calling_ae
    if args.timeout:
        options["timeout"] = args.timeout
    return connect(node, config=cfg, **options), cfg


def run_echo(args: argparse.Namespace) -> int:
    """C-ECHO (or a QIDO-RS request) and print the round trip."""
    client, _ = _client(args)
    seconds = client.echo()
    print(f"{client.node}: answered in {seconds * 1000:.0f} ms")
    return 0


def run_find(args: argparse.Namespace) -> int:
    """Find studies (and optionally their series) and print them as text or JSON."""
    from mfm_engine.pacs.query import Query, parse_date_range

    date_from, date_to = parse_date_range(args.date)
    query = Query(
        patient_id=args.patient_id,
        patient_name=args.patient_name,
        date_from=date_from,
        date_to=date_to,
        modality=args.modality.upper(),
        accession=args.accession,
        study_uid=args.study,
    )
    client, _ = _client(args)
    studies = client.find_studies(query)
    entries: list[dict[str, Any]] = []
    for study in studies:
        entry = study.to_dict()
        if args.series:
            entry["series"] = [s.to_dict() for s in client.find_series(study.study_uid)]
        entries.append(entry)
    if args.json:
        print(json.dumps({"node": str(client.node), "studies": entries}, indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print(f"{client.node}: no matching study")
        return 0
    for e in entries:
        mods = "/".join(e["modalities"]) or "?"
        print(
            f"{e['study_date'] or '--------'}  {e['patient_id'] or '-'}  {e['patient_name'] or '-'}  {mods}  "
            f"acc {e['accession'] or '-'}  '{e['description']}'  "
            f"{e['n_series'] if e['n_series'] is not None else '?'} series, "
            f"{e['n_instances'] if e['n_instances'] is not None else '?'} instances"
        )
        print(f"    study {e['study_uid']}")
        for s in e.get("series", []):
            n = s["n_instances"] if s["n_instances"] is not None else "?"
            print(
                f"    [{s['number'] if s['number'] is not None else '-'}] {s['modality']} "
                f"'{s['description']}' {n} instances"
            )
            print(f"        series {s['series_uid']}")
    return 0


class _Bar:
    """A tqdm bar on stderr fed by (done, total) callbacks (none when quiet)."""

    def __init__(self, quiet: bool, unit: str) -> None:
        self.bar = None
        # A bar is for a person watching; in a log file it is only noise.
        self.quiet = quiet or not sys.stderr.isatty()
        self.unit = unit

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, unit=self.unit, file=sys.stderr, leave=False)
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_get(args: argparse.Namespace) -> int:
    """Retrieve a series or a study; print the folder it is in."""
    from mfm_engine.pacs.retrieve import cache_folder

    options: dict[str, Any] = {}
    client, cfg = _client(args, **({"move_port": args.move_port} if args.move_port else {}))
    if client.node.is_dicomweb and args.method == "move":
        from mfm_engine.pacs.errors import PacsError

        raise PacsError("--method move is DIMSE only; a DICOMweb node retrieves with WADO-RS")
    if not client.node.is_dicomweb:
        options["method"] = args.method
    cache = Path(args.cache) if args.cache else cfg.cache
    if args.out:
        target = Path(args.out)
    else:
        target = cache_folder(cache, args.study.strip(), args.series.strip() if args.series else None)
    bar = _Bar(args.quiet, "instance")
    try:
        if args.series:
            result = client.retrieve_series(
                args.study.strip(),
                args.series.strip(),
                target,
                progress=bar,
                overwrite=args.overwrite,
                **options,
            )
        else:
            result = client.retrieve_study(
                args.study.strip(), target, progress=bar, overwrite=args.overwrite, **options
            )
    finally:
        bar.close()
    print(f"{result.folder}  ({result.n_instances} instance(s) by {result.method})", file=sys.stderr)
    print(result.folder)
    return 0


def run_send(args: argparse.Namespace) -> int:
    """Send files / folders; print how many were stored."""
    client, _ = _client(args)
    bar = _Bar(args.quiet, "instance")
    try:
        result = client.store(args.paths, progress=bar)
    finally:
        bar.close()
    for path, why in result.warnings:
        print(f"warning: {path}: {why}", file=sys.stderr)
    print(f"{client.node}: stored {result.sent} instance(s)")
    return 0


def run_nodes(args: argparse.Namespace) -> int:
    """Show or edit the named nodes in the PACS config file."""
    from mfm_engine.pacs.errors import NodeConfigError
    from mfm_engine.pacs.nodes import load_config, parse_node, save_config, validate_ae_title

    cfg = load_config(args.config)
    changed = False
    for name, address in args.add:
        parse_node(address, name=name)
        cfg.nodes[name] = address
        changed = True
    if args.remove:
        if args.remove not in cfg.nodes:
            raise NodeConfigError(f"{cfg.path}: no node named {args.remove!r}")
        del cfg.nodes[args.remove]
        if cfg.default_node == args.remove:
            cfg.default_node = ""
        changed = True
    if args.default:
        if args.default not in cfg.nodes:
            raise NodeConfigError(f"{cfg.path}: no node named {args.default!r}; add it first with --add")
        cfg.default_node = args.default
        changed = True
    if args.calling_ae:
        cfg.calling_ae = validate_ae_title(args.calling_ae, "--calling-ae")
        changed = True
    if changed:
        save_config(cfg, args.config)
    print(f"config: {cfg.path}")
    print(f"calling AE title: {cfg.calling_ae}")
    for name in sorted(cfg.nodes):
        mark = " (default)" if name == cfg.default_node else ""
        print(f"  {name}: {cfg.nodes[name]}{mark}")
    if not cfg.nodes:
        print("  no nodes yet: mfm pacs nodes --add NAME AET@HOST:PORT")
    return 0
