"""The gunicorn gateway streams bodies: 10 MB uploads and downloads never sit whole in its memory.

Measured as the peak resident memory (VmHWM) of the gateway's worker process before and after, with a
stand-in upstream (it serves the JWKS the gateway verifies tokens with, and swallows uploads)."""
from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import requests
import urllib3

from tests.conftest import free_port
from tests.standin import BLOCK, StandInService

SIZE = 10 * 1024 * 1024


def test_gateway_memory_stays_flat_under_concurrent_10mb_uploads(vhost_url, tmp_path):
    from deploy.services import ProcessSet

    stand_in = StandInService()
    from deploy.wsgi import SERVICES

    # The stand-in answers for every upstream (its /readyz makes the gateway ready).
    procs = ProcessSet(ports={**{name: stand_in.port for name in SERVICES}, "gateway": free_port()}, var_dir=str(tmp_path),
                       env={"BUS_URL": vhost_url, "GATEWAY_USER_RATE": "1000", "GATEWAY_USER_BURST": "1000"})
    procs.start(timeout=120, names=("gateway",))  # generous: a loaded machine starts processes slowly
    try:
        url = f"{procs.url('gateway')}/api/v1/schools/999001/imports/students"
        headers = {"Authorization": f"Bearer {stand_in.token()}", "Content-Type": "text/csv"}
        expected = hashlib.sha256(BLOCK * (SIZE // len(BLOCK))).hexdigest()
        warm = requests.post(url, data=b"x" * 1000, headers=headers, timeout=30)
        assert warm.status_code == 200, warm.text
        pool = urllib3.PoolManager(maxsize=20)

        def upload(size, together=None):
            def body():
                for n in range(size // len(BLOCK)):
                    if together and n == 1:
                        together.wait(120)  # every upload is in the gateway at once
                    yield BLOCK
            response = pool.urlopen("POST", url, body=body(), chunked=True, headers=headers)
            return response.status, response.json()

        # Warm up with the same concurrency: eight 1 MB uploads in flight together. Each request in flight holds a
        # fixed set of buffers (256 KiB reads and their copies, about 1 MiB), eight of them about 8-10 MiB: whether
        # the baseline includes them or not decided the test (it then depended on how many of the eight uploads
        # overlapped). With them in the baseline, the growth below is what grows with the size of the bodies.
        together = threading.Barrier(8)
        with ThreadPoolExecutor(max_workers=8) as clients:
            assert {status for status, _ in clients.map(lambda _: upload(1024 * 1024, together), range(8))} == {200}
        baseline = procs.peak_rss_kib("gateway")

        with ThreadPoolExecutor(max_workers=8) as clients:
            results = list(clients.map(lambda _: upload(SIZE), range(8)))
        assert results == [(200, {"bytes": SIZE, "sha256": expected})] * 8
        download = requests.get(f"{url}?size={SIZE}", headers=headers, stream=True, timeout=30)
        assert sum(len(c) for c in download.iter_content(65536)) == SIZE
        growth_mib = (procs.peak_rss_kib("gateway") - baseline) / 1024
        # 8 concurrent 10 MB uploads = 80 MB of bodies; buffering even one would add 10 MB.
        assert growth_mib < 8, f"gateway peak RSS grew {growth_mib:.1f} MiB"
    finally:
        procs.stop()
        stand_in.stop()
