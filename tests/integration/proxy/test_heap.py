"""HeapTrimmer gives freed heap memory back to the kernel (real glibc, in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ambit.proxy.heap import HeapTrimmer
from ambit.testing.ztunnel_mesh import eventually

# A burst like a bulk transfer's: 64-200 KiB buffers (served from the heap once a large free has
# raised glibc's mmap threshold) with small long-lived objects between them, then the buffers freed.
_PROGRAM = r"""
import asyncio, json
from ambit.proxy.heap import HeapTrimmer

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

async def main():
    trimmer = HeapTrimmer(interval=0.05, threshold=8 << 20)
    large = bytearray(300 * 1024)
    del large  # a large free: glibc raises its mmap threshold
    big, keep = [], []
    for i in range(300):
        big.append(bytes((65536, 131072, 200000)[i % 3]))
        keep.append(bytes(700))
    big.clear()
    before = rss_kib()
    free = trimmer.free_bytes()
    trimmer.start()
    for _ in range(100):
        await asyncio.sleep(0.02)
        if trimmer.trims:
            break
    await trimmer.close()
    print(json.dumps({"before": before, "after": rss_kib(), "free": free, "trims": trimmer.trims}))

asyncio.run(main())
"""


@pytest.mark.skipif(not HeapTrimmer().available, reason="the C library is not glibc")
def test_free_heap_pages_go_back_to_the_kernel() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout)
    assert result["free"] >= 8 << 20, result  # the burst left its buffers free in the heap
    assert result["trims"] >= 1, result
    assert result["before"] - result["after"] >= 20 * 1024, result  # at least 20 MiB released


class CountingTrimmer(HeapTrimmer):
    """Counts its checks of the free heap (one per interval), so a test can wait for them."""

    checks = 0

    def free_bytes(self) -> int:
        self.checks += 1
        return super().free_bytes()


@pytest.mark.skipif(not HeapTrimmer().available, reason="the C library is not glibc")
async def test_below_the_threshold_nothing_is_trimmed() -> None:
    trimmer = CountingTrimmer(interval=0.01, threshold=1 << 62)
    trimmer.start()
    await eventually(lambda: trimmer.checks >= 5, within=5.0)  # five checks ran, none trimmed
    await trimmer.close()
    assert trimmer.trims == 0
