"""The published VDSR reproduces its Set5 table: `basicsr test` with options/test_vdsr_published_x{2,3,4}.yml and
pytorch-vdsr's weights on Set5 laid out by `basicsr prepare benchmark` (HR cropped to a multiple of 12, 8-bit LR by
MATLAB bicubic, `<name>x<s>.png`)."""
import json

import pytest

from conftest import ROOT, run_cli, write_options

WEIGHTS = ROOT.parent / 'shared' / 'weights' / 'pytorch-vdsr' / 'model_epoch_50.pth'
SET5 = ROOT.parent / 'shared' / 'benchmarks' / 'Set5'
# Published 37.65 / 33.77 / 31.45 dB on unquantised Y; through 8-bit colour LR and output files the pipeline
# gives 37.58 / 33.75 / 31.45 (measured), so these leave about 0.03-0.05 dB.
AT_LEAST = {2: 37.55, 3: 33.72, 4: 31.40}


@pytest.fixture(scope='module')
def benchmark_root(tmp_path_factory):
    if not WEIGHTS.is_file():
        pytest.skip(f'{WEIGHTS} is missing: needs ../shared/weights (development data, not in the repository)')
    if not SET5.is_dir():
        pytest.skip(f'{SET5} is missing: needs ../shared/benchmarks (development data, not in the repository)')
    root = tmp_path_factory.mktemp('published')
    # the layout made by the product's own command, as a user makes it
    run_cli(['prepare', 'benchmark', '--input', str(SET5), '--output', str(root / 'datasets' / 'benchmark' / 'Set5'),
             '--scales'] + [str(s) for s in AT_LEAST], root)
    return root


# x2 in make test; x3 and x4 (about 18 s each) in make test-all.
@pytest.mark.parametrize('scale', [pytest.param(s, marks=[pytest.mark.slow] if s != 2 else []) for s in sorted(AT_LEAST)])
def test_published_vdsr_reproduces_its_set5_figures(benchmark_root, scale):
    options = write_options(f'options/test_vdsr_published_x{scale}.yml', benchmark_root / f'x{scale}.yml',
                            path__pretrain_network_g=str(WEIGHTS), num_gpu=0)
    run_cli(['test', '-opt', options], benchmark_root)
    metrics = json.loads((benchmark_root / 'results' / f'VDSR_published_x{scale}' / 'metrics_Set5.json').read_text())
    assert metrics['psnr'] >= AT_LEAST[scale], metrics
