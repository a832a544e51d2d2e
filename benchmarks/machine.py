"""Shared helpers of the benchmarks: describe the machine, record a section in RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"model name\s*:\s*(.+)", text)
    return match.group(1).strip() if match else "unknown CPU"


def machine_summary() -> str:
    import numpy
    import scipy

    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores visible, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, NumPy {numpy.__version__}, "
        f"SciPy {scipy.__version__}. Date: {datetime.date.today().isoformat()}."
    )


def record_section(key: str, title: str, body: str) -> None:
    """Replace (or append) the section delimited by markers for ``key`` in RESULTS.md."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    section = f"{start}\n## {title}\n\n{body}\n{end}"
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else (
            "# Benchmark results\n\nWritten by `make bench`; each section names its machine and "
            "command. Compare ratios measured in the same run: absolute times on shared machines "
            "are noisy.\n"
        )
    )
    if start in text and end in text:
        text = re.sub(
            re.escape(start) + r".*?" + re.escape(end), lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
