"""Download throughput and memory: one synthetic product (1 GB by default) from a local fake CDSE, streamed by
`link-fetcher download --id` (a separate process) into DOWNLOAD_DIR with MD5 + BLAKE3 verification.

Prints MB/s of the transfer (first to last byte, as the fake server saw it), MB/s end to end (process start,
token, database, transfer, fsync, exit) and the downloader process's peak RSS. Goals: ≥ 200 MB/s, ≤ 150 MB.
Usage: python -m benchmarks.download [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import SERVER_URL, scratch_database
from db import record_granules
from tests.factories import granule_record
from tests.fakes.cdse_download import FakeCdseDownload
from tests.fakes.cdse_identity import FakeIdentity
from tests.process_memory import wait_with_peak_rss

CLI_PROCESS = [sys.executable, "-m", "link_fetcher"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024

    with (
        scratch_database() as engine,
        FakeIdentity() as identity,
        FakeCdseDownload(identity) as cdse,
        tempfile.TemporaryDirectory(prefix="lf-bench-dl-") as folder,
    ):
        product = cdse.add_product(size)
        record = granule_record(0, id=product.id, size=size, checksum=product.md5, blake3=product.blake3)
        with engine.begin() as conn:
            record_granules(conn, [record], ["unassigned"])
        env = {
            **os.environ,
            "DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "CDSE_DOWNLOAD_URL": cdse.url,
            "CDSE_IDENTITY_URL": identity.url,
            "CDSE_USERNAME": identity.username,
            "CDSE_PASSWORD": identity.password,
            "DOWNLOAD_DIR": folder,
            "UPLOAD_BUCKET": "",
        }
        started = time.perf_counter()
        process = subprocess.Popen(
            [*CLI_PROCESS, "download", "--id", product.id], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        peak_mb = wait_with_peak_rss(process)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            sys.exit(f"download failed: {process.stderr.read().decode().strip()}")
        stored = sum(len(files) for _, _, files in os.walk(folder))

    megabytes = size / 1e6
    print(f"product     {megabytes:,.0f} MB synthetic, MD5 + BLAKE3 verified, {stored} file stored ({SERVER_URL})")
    print(f"transfer    {megabytes / product.last_transfer_seconds:,.0f} MB/s  ({product.last_transfer_seconds:.2f} s)")
    print(f"end to end  {megabytes / wall:,.0f} MB/s  ({wall:.2f} s incl. process start, token, database, fsync)")
    print(f"peak RSS    {peak_mb:.0f} MB (downloader process)")


if __name__ == "__main__":
    main()
