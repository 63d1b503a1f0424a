"""``python -m moesr_arch ...`` is the ``basicsr`` command."""
import sys

from moesr_arch.cli import main

sys.exit(main())
