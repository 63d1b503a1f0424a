"""Train a YOLO segmentation gate for MoE-SR on category labels, offline (same as ``basicsr train-gate``).

Demo (2 min 40 s on a 2-core CPU)::

    python scripts/train_gate.py --dataset datasets/demo --lr-scale 2 --epochs 40 --repeat 8 --imgsz 256 \
        --output experiments/gate_demo
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moesr_arch.gating import train_gate  # noqa: E402

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=train_gate.__doc__.split('\n\n')[0])
    train_gate.add_arguments(parser)
    sys.exit(train_gate.main(parser.parse_args()))
