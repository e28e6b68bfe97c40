"""The thin layer every stage script shares: argument parsing and error reporting."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from birdplane.errors import BirdplaneError


def parser(doc: str | None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=(doc or "").strip().split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--params", default="params.yaml", help="the params file")
    return ap


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage; a BirdplaneError ends it with its message and exit status 1, no traceback."""
    try:
        main()
    except BirdplaneError as e:
        print(f"error in stage {name}: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"stage {name} interrupted; no outputs were written", file=sys.stderr)
        sys.exit(130)
