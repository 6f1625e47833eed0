"""`mfm node`: run the translation node (a storage SCP that returns synthetic native series).

    mfm node --ae MFM --port 11112 --model demo --solver euler --steps 8 \\
             --send-to ORTHANC@127.0.0.1:4242 --allow CT_SCANNER ORTHANC

Runs until interrupted (Ctrl-C or SIGTERM finish the current step and stop). Jobs live in SQLite in
``--state`` (default ``$XDG_STATE_HOME/mfm-studio/node-<AET>``); a restart resumes them. Logs go to
stderr, one line per job. See docs/pacs.md.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `node` subcommand."""
    parser = subparsers.add_parser(
        "node",
        help="run a DICOM node that translates received CT series and sends the synthetic series on",
        description="A storage SCP: accepts CT series from allowed callers, waits until a series is quiet, "
        "translates it and sends the synthetic (DERIVED, SyntheticData YES) series to --send-to.",
    )
    parser.add_argument("--ae", default="MFM", metavar="AET", help="the node's AE title (default MFM)")
    parser.add_argument(
        "--port", type=int, default=11112, metavar="P", help="port to listen on (default 11112)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 = all)"
    )
    parser.add_argument("--model", required=True, metavar="M", help="checkpoint (.safetensors), or 'demo'")
    parser.add_argument("--solver", default="euler", metavar="S", help="ODE solver (default euler)")
    parser.add_argument("--steps", type=int, default=8, metavar="N", help="solver steps (default 8)")
    parser.add_argument(
        "--direction", choices=("c2n", "n2c"), default="c2n", help="default c2n (contrast → native)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--send-to", required=True, metavar="NODE", help="destination: AET@HOST:PORT, URL or config name"
    )
    parser.add_argument(
        "--allow", nargs="+", default=[], metavar="AET", help="calling AE titles allowed to send"
    )
    parser.add_argument(
        "--allow-any", action="store_true", help="accept any calling AE title (not recommended)"
    )
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=10.0,
        metavar="Q",
        help="a series is complete after Q s without a new instance",
    )
    parser.add_argument(
        "--state", metavar="DIR", help="state folder (jobs database, received and synthetic files)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network timeout in seconds")
    parser.add_argument("--config", metavar="FILE", help="PACS config file, for a --send-to given by name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the node from flags and serve until interrupted."""
    from mfm_engine.pacs.node import NodeSettings, TranslationNode
    from mfm_engine.pacs.nodes import load_config, resolve_node

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("pynetdicom").propagate = False  # our log says what matters, once
    model = args.model
    if model == "demo":
        from mfm_engine.demo import demo_checkpoint
        from mfm_engine.pacs.errors import PacsError

        found = demo_checkpoint()
        if found is None:
            raise PacsError("the demo model is not installed (assets/demo_model); pass --model CHECKPOINT")
        model = str(found)
    settings = NodeSettings(
        model=model,
        send_to=resolve_node(args.send_to, load_config(args.config)),
        ae_title=args.ae,
        port=args.port,
        host=args.host,
        solver=args.solver,
        steps=args.steps,
        direction=args.direction,
        device=args.device,
        allow=args.allow,
        allow_any=args.allow_any,
        quiet_seconds=args.quiet_seconds,
        state_dir=args.state,
        timeout_s=args.timeout,
    )
    node = TranslationNode(settings)

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("mfm.node").info("signal %d: stopping after the current step", signum)
        node.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    node.serve_forever()
    return 0
