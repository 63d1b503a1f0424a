"""PSNR/SSIM of restored images against GT (BasicSR's metric functions); see ``--help``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's package, also when not installed

import moesr_arch  # noqa: E402,F401  (BasicSR import shim first)
from moesr_arch.tools import psnr_ssim  # noqa: E402

if __name__ == '__main__':
    sys.exit(psnr_ssim.cli())
