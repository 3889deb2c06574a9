"""`aios-engine run`: the long-running service (contract §3, §5)."""
from __future__ import annotations

import argparse
import asyncio
import errno
import os

from engine.cli import UserError
from engine.cli.common import config_from


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run the engine: API, agents, sensors, playbooks")
    parser.add_argument("--config", metavar="FILE", help="aios.yaml (default: ./aios.yaml if it exists)")
    parser.add_argument("--data", metavar="DIR", help="data directory (default: the config's data_dir)")
    parser.add_argument("--rules", metavar="DIR", help="playbook directory (default: the config's rules_dir)")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.service.app import Engine, StartupError
    from engine.service.logs import setup_logging
    from engine.store.lock import DataDirLocked

    setup_logging(os.environ.get("AIOS_LOG_LEVEL", "INFO"))
    config = config_from(args)
    try:
        engine = Engine(config, data_dir=Path(args.data) if args.data else None,
                        rules_dir=Path(args.rules) if args.rules else None, host=args.host, port=args.port)
        return asyncio.run(engine.run_forever())
    except StartupError as exc:
        raise UserError(str(exc)) from None
    except DataDirLocked as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"cannot listen on {engine.host}:{engine.port}: the address is in use "
                            "(another engine? pick --port)") from None
        raise
