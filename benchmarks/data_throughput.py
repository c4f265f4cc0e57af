"""Generation and import throughput (MB/s) on the benchmark stack (~1.2 GB of ERA5-like data).

Usage: .venv/bin/python benchmarks/data_throughput.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import common

common.configure()

from machine import print_machine  # noqa: E402

from proxima import datagen, repository, s3  # noqa: E402
from proxima.platform import from_stack  # noqa: E402


def main() -> None:
    info = print_machine()
    settings, config = common.up()
    rows = []
    for region in from_stack(config, settings).regions:
        for dataset in region.datasets:
            if dataset.name != "era5":
                continue
            client = s3.client(region)
            for obj in (
                client.list_objects_v2(Bucket=dataset.bucket).get("Contents", [])
                if any(b["Name"] == dataset.bucket for b in client.list_buckets()["Buckets"])
                else []
            ):
                client.delete_object(Bucket=dataset.bucket, Key=obj["Key"])
            gen = datagen.generate(region, dataset)
            root = Path(region.root)
            shutil.rmtree(root / dataset.bucket, ignore_errors=True)
            first = repository.import_region(region, root)
            again = repository.import_region(region, root)
            rows.append(
                {
                    "region": region.name,
                    "raw_MB": round(gen.bytes_raw / 1e6, 1),
                    "written_MB": round(gen.bytes_written / 1e6, 1),
                    "generate_MBps_raw": round(gen.bytes_raw / 1e6 / gen.seconds, 1),
                    "generate_MBps_written": round(gen.bytes_written / 1e6 / gen.seconds, 1),
                    "import_MBps": round(first.bytes_copied / 1e6 / first.seconds, 1),
                    "reimport_copied_bytes": again.bytes_copied,
                    "reimport_s": round(again.seconds, 2),
                }
            )
    print(
        "\n| region | raw MB | written MB | generate MB/s (raw) | generate MB/s (written) "
        "| import MB/s | re-import copied B |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['region']} | {r['raw_MB']} | {r['written_MB']} | {r['generate_MBps_raw']} | "
            f"{r['generate_MBps_written']} | {r['import_MBps']} | {r['reimport_copied_bytes']} |"
        )
    common.save("data_throughput", {"machine": info, "rows": rows})


if __name__ == "__main__":
    main()
