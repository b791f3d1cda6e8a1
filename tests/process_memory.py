"""Peak memory of a child process, for memory tests and benchmarks.

Not `ru_maxrss` from wait4: Linux carries the parent's high-water mark across fork+exec, so a child of a
large pytest process would report the parent's size. VmHWM in /proc/<pid>/status belongs to the child's
own address space; it only grows, so polling it while the child runs gives its peak.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def wait_with_peak_rss(process: subprocess.Popen, interval: float = 0.02) -> float:
    """Wait for `process` to end; return its peak resident memory in MB (VmHWM, Linux)."""
    peak_kb = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            lines = status.read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            break
        for line in lines:
            if line.startswith("VmHWM:"):
                peak_kb = max(peak_kb, int(line.split()[1]))
        time.sleep(interval)
    process.wait()
    return peak_kb / 1024
