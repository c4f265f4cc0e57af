"""``python -m proxima.stac``: serve the STAC API.

Without ``--catalog`` it serves the local stack's catalog and file systems; on AWS the
container is started with the catalog's endpoint and SigV4 (the task role's
credentials), and no file system is mounted.
"""

from __future__ import annotations

import argparse

import uvicorn

from proxima.opensearch import CatalogConnection
from proxima.platform.stack import from_stack
from proxima.stac.app import build_app


def main() -> None:
    """Serve the catalog until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--catalog", help="The catalog's endpoint (default: the local stack's).")
    parser.add_argument("--alias", default="proxima-assets")
    parser.add_argument("--auth", choices=["none", "sigv4"], default="sigv4")
    parser.add_argument("--aws-region", help="The catalog domain's region (SigV4).")
    args = parser.parse_args()
    if args.catalog:
        connection = CatalogConnection(
            hosts=[args.catalog], alias=args.alias, auth=args.auth, aws_region=args.aws_region
        )
        roots: dict[str, str] = {}
    else:
        platform = from_stack()
        connection, roots = platform.catalog, {r.name: r.root for r in platform.regions}
    uvicorn.run(build_app(connection, roots), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
