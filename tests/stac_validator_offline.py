"""Run stac-api-validator with the STAC JSON schemas from disk (this machine has no internet).

``python tests/stac_validator_offline.py --root-url URL --conformance core ...``

stac-api-validator fetches every schema over HTTPS. The core STAC 1.1.0 and GeoJSON
schemas are the copies pystac ships; extension schemas (stac-extensions.github.io) are
in no package here, so they validate as an open object and are listed on stderr: the
suite checks the datacube fields itself (tests/test_stac.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pystac.validation.jsonschemas as bundled
import requests

SCHEMAS = Path(bundled.__file__).parent
CORE = re.compile(r"https://schemas\.stacspec\.org/v1\.1\.0/.*?([\w-]+\.json)$")
GEOJSON = re.compile(r"https://geojson\.org/schema/(\w+\.json)$")
EXTENSION = re.compile(r"https://stac-extensions\.github\.io/")
_real_get = requests.get
unvalidated: set[str] = set()


def _response(url: str, body: dict[str, Any]) -> requests.Response:
    resp = requests.Response()
    resp.status_code = 200
    resp.url = url
    resp._content = json.dumps(body).encode()
    resp.headers["Content-Type"] = "application/json"
    return resp


def offline_get(url: str, *args: Any, **kwargs: Any) -> requests.Response:
    """Serve schema URLs from disk; everything else goes to the network as asked."""
    if m := CORE.match(url):
        return _response(url, json.loads((SCHEMAS / "stac-spec" / "v1.1.0" / m[1]).read_text()))
    if m := GEOJSON.match(url):
        return _response(url, json.loads((SCHEMAS / "geojson" / m[1]).read_text()))
    if EXTENSION.match(url):
        unvalidated.add(url)
        return _response(url, {"$schema": "http://json-schema.org/draft-07/schema#"})
    return _real_get(url, *args, **kwargs)


def main() -> int:
    """Run the validator's CLI with schema fetches served from disk."""
    requests.get = offline_get  # type: ignore[assignment]
    from stac_api_validator.__main__ import main as validator

    code = int(validator.main(args=sys.argv[1:], standalone_mode=False) or 0)
    for url in sorted(unvalidated):
        print(f"not validated offline: {url}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
