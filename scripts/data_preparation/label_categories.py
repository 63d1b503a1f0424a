"""Same as ``basicsr prepare label_categories``; run ``python scripts/data_preparation/label_categories.py --help``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's package, also when not installed

import moesr_arch  # noqa: E402,F401  (BasicSR import shim first)
from moesr_arch.tools.prepare import label_categories  # noqa: E402

if __name__ == '__main__':
    sys.exit(label_categories.cli())
