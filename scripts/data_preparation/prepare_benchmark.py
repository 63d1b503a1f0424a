"""Same as ``basicsr prepare benchmark``; run ``python scripts/data_preparation/prepare_benchmark.py --help``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's package, also when not installed

import moesr_arch  # noqa: E402,F401  (BasicSR import shim first)
from moesr_arch.tools.prepare import benchmark  # noqa: E402

if __name__ == '__main__':
    sys.exit(benchmark.cli())
