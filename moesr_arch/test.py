"""``python -m moesr_arch.test -opt FILE``: ``basicsr test`` (the plugin's test pipeline)."""
import sys

from moesr_arch.cli import run_pipeline

if __name__ == '__main__':
    run_pipeline('test', sys.argv[1:], 'moesr_arch.test')
