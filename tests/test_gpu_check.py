"""The GPU check's dry run on the CPU (`make test-all`): every path runs or is reported as CUDA only, none fails."""
import re
import subprocess
import sys

import pytest

from conftest import ROOT, cli_env
from moesr_arch.options import load_options, validate_options

RUN_ON_CPU = [
    'train_val_seemore', 'auto_resume', 'moesr_prefetch', 'moeisr_expert_maps',
    'infer_precision_auto', 'seemore_batch_routing', 'seemore_autocast_channels_last', 'moesr_sparse_vs_dense',
    'moeisr_sparse_decoding', 'yolo_gate', 'infer_seemore_precisions', 'infer_moesr_yolo_gate',
    'infer_moeisr_any_scale', 'onnx_export_cuda_network', 'matlab_bicubic', 'export_onnx_cli',
    'matlab_bicubic_timing', 'throughput_eager', 'training_speed',
]
CUDA_ONLY = [
    'photos_seemore_x2', 'torchrun_nccl_moesr_shipped', 'torchrun_nccl_moesr_unused', 'torchrun_num_gpu_0', 'train_gate_cuda',
    'resume_map_location', 'moesr_cudnn_benchmark_timing', 'compile_seemore',
]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_dry_run_passes_and_reports_every_path(demo_root, tmp_path, monkeypatch):
    out = tmp_path / 'out'
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts/gpu_check.py'), '--dry-run', '--data', str(demo_root),
                           '--work', str(tmp_path / 'work'), '--output', str(out)],
                          cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=1400)
    results = (out / 'results.txt').read_text() if (out / 'results.txt').is_file() else proc.stdout
    assert proc.returncode == 0, results + proc.stderr[-3000:]
    statuses = dict((name, status) for status, name in re.findall(r'^(PASS|FAIL|SKIP) (\S+)', results, re.M))
    assert statuses == {**dict.fromkeys(RUN_ON_CPU, 'PASS'), **dict.fromkeys(CUDA_ONLY, 'SKIP')}, results
    assert len(re.findall(r'^BENCH .*images/s', results, re.M)) >= 5
    # The CUDA-only runs never start here: their option files must at least be valid.
    monkeypatch.chdir(demo_root)
    for name in CUDA_ONLY[:3]:
        validate_options(load_options(out / f'{name}.yml'), str(out / f'{name}.yml'))
