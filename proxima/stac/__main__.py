"""``python -m proxima.stac --host H --port P``: serve the STAC API of the local stack."""

from __future__ import annotations

import argparse

import uvicorn

from proxima.platform.stack import from_stack
from proxima.stac.app import build_app


def main() -> None:
    """Serve the stack's catalog until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    uvicorn.run(build_app(from_stack()), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
