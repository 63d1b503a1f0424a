"""``python -m moesr_arch.train -opt FILE [BasicSR flags]``: ``basicsr train`` (the plugin's training pipeline).

This is also the module to give ``torchrun`` for distributed training:
``torchrun --nproc_per_node=2 -m moesr_arch.train -opt FILE --launcher pytorch``.
"""
import sys

from moesr_arch.cli import run_pipeline

if __name__ == '__main__':
    run_pipeline('train', sys.argv[1:], 'moesr_arch.train')
