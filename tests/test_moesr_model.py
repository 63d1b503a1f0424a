"""MoESRModel: staged training, validation table and pictures, test with the YOLO gate (CLI, demo photos)."""
import json
import math
import re

import cv2
import pytest
import torch
import yaml

from conftest import ROOT, run_cli, tb_scalars, write_options
from moesr_arch.models.moesr_model import stage_schedule
from moesr_arch.options import OptionError, validate_options

TINY_EXPERT = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
EXPERTS = {name: TINY_EXPERT for name in ('people', 'vehicle', 'background')}
STAGES = [{'stage': 'generalist', 'iters': 2}, {'stage': 'experts', 'iters': 2}, {'stage': 'joint', 'iters': 2}]


def tiny_train_options(workdir, name='tiny_moesr', **extra):
    overrides = dict(name=name, train__stages=STAGES, train__total_iter=6, network_g__experts=EXPERTS,
                     network_ref=TINY_EXPERT,
                     datasets__train__batch_size_per_gpu=4, datasets__train__gt_size=32, val__val_freq=6,
                     logger__print_freq=1, logger__save_checkpoint_freq=6, train__scheduler__milestones=[100])
    overrides.update(extra)
    return write_options('options/train_moesr.yml', workdir / 'train.yml', **overrides)


def test_region_metrics_match_basicsr_on_the_whole_image_and_see_only_the_region():
    import numpy as np
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from moesr_arch.evaluation.regions import masked_psnr, masked_ssim
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    sr = np.clip(gt + rng.normal(0, 8, gt.shape), 0, 255).astype(np.uint8)
    everything = np.ones(gt.shape[:2], bool)
    for y in (False, True):
        assert masked_psnr(sr, gt, everything, 2, y) == pytest.approx(calculate_psnr(sr, gt, 2, test_y_channel=y))
        assert masked_ssim(sr, gt, everything, 2, y) == pytest.approx(calculate_ssim(sr, gt, 2, test_y_channel=y))
    region = np.zeros(gt.shape[:2], bool)
    region[10:30, 10:30] = True
    damaged = sr.copy()
    damaged[~region] = 0  # damage outside the region does not count
    assert masked_psnr(damaged, gt, region, 2) == pytest.approx(masked_psnr(sr, gt, region, 2))
    assert math.isnan(masked_psnr(sr, gt, np.zeros_like(region), 2))  # an empty region has no PSNR
    assert math.isnan(masked_ssim(sr, gt, np.zeros_like(region), 2))


def test_stage_schedule_switches_by_iteration():
    assert stage_schedule({'stages': STAGES, 'total_iter': 6}) == [('generalist', 1, 2), ('experts', 3, 4),
                                                                   ('joint', 5, 6)]
    assert stage_schedule({'stage': 'joint', 'total_iter': 9}) == [('joint', 1, 9)]


@pytest.mark.parametrize('change, message', [
    ({'train': {'total_iter': 7}}, 'train.stages add up to 6 iterations but train.total_iter is 7'),
    ({'train': {'stage': 'joint'}}, 'give exactly one of train.stage'),
    ({'train': {'stages': [{'stage': 'expert', 'iters': 6}]}}, r"train.stages\[0\].stage must be one of 'generalist'"),
    ({'network_g': {'type': 'VDSR'}}, 'network_g.type must be MoESRNet'),
    ({'gate': {'type': 'SAMGate'}}, "gate.type: no gate named 'SAMGate'"),
    ({'val': {'self_ensemble': True}}, 'val.self_ensemble is not supported'),
])
def test_option_errors_name_the_key(change, message, demo_root, monkeypatch):
    monkeypatch.chdir(demo_root)
    opt = yaml.safe_load((ROOT / 'options/train_moesr.yml').read_text())
    opt['train']['stages'], opt['train']['total_iter'] = STAGES, 6
    for section, values in change.items():
        if section == 'network_g':
            opt['network_g'] = dict(values)
        else:
            opt.setdefault(section, {}).update(values)
    with pytest.raises(OptionError, match=message):
        validate_options(opt, 'train_moesr.yml')


def test_option_files_are_valid(demo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(demo_root)
    for name, is_train in (('train_moesr.yml', True), ('test_moesr.yml', False)):
        opt = yaml.safe_load((ROOT / 'options' / name).read_text())
        opt['path']['pretrain_network_g'] = None  # made by the main job
        if opt['gate']['type'] == 'YOLOGate':  # its weights come from `basicsr train-gate`
            opt['gate'] = dict(opt['gate'], weights=None, model='yolov8n-seg.yaml')
        validate_options(opt, name, is_train=is_train)
    # Real data: the DIV2K-style layout the x4 files document (empty folders suffice for the check).
    monkeypatch.chdir(tmp_path)
    for split in ('train', 'val'):
        for folder in ('HR', 'LR_bicubic/X4', 'labels'):
            (tmp_path / 'datasets/MoESR' / split / folder).mkdir(parents=True)
    (tmp_path / 'datasets/MoESR/categories.yml').write_text('0: people\n1: car\n2: plane\n3: dog\n4: cat\n')
    for name, is_train in (('train_moesr_x4.yml', True), ('test_moesr_x4.yml', False)):
        opt = yaml.safe_load((ROOT / 'options' / name).read_text())
        opt['path']['pretrain_network_g'] = None
        if opt['gate']['type'] == 'YOLOGate':
            opt['gate'] = dict(opt['gate'], weights=None, model='yolov8n-seg.yaml')
        validate_options(opt, name, is_train=is_train)


def test_staged_training_validation_table_and_test_with_yolo_gate(workdir):
    """One run through all three stages; then `basicsr test` through the YOLO gate and sparse experts."""
    run_cli(['train', '-opt', tiny_train_options(workdir)], workdir)
    run_dir = workdir / 'experiments' / 'tiny_moesr'
    log = next(run_dir.glob('train_*.log')).read_text()
    # Every stage ran and trained what it should.
    assert 'Stage generalist starts at iteration 1' in log
    assert 'Category experts initialised from the background expert: people, vehicle' in log
    scalars = tb_scalars(workdir / 'tb_logger' / 'tiny_moesr')
    expert_losses = [step for tag in ('losses/l_pix_people', 'losses/l_pix_vehicle')
                     for step, _ in scalars.get(tag, [])]
    assert expert_losses and set(expert_losses) <= {3, 4}, sorted(scalars)  # the expert stage trains experts
    assert 'Stage joint starts at iteration 5' in log and [step for step, _ in scalars['losses/l_pix']][-1] == 6
    # The validation table: overall and per category, MoE-SR beside the background expert alone.
    table = re.search(r'MoE-SR on demo_val at 6 .*?\n((?:\t.*\n)+)', log).group(1)
    rows = {line.split()[0]: line.split() for line in table.strip().splitlines()}
    assert set(rows) == {'region', 'all', 'people', 'vehicle'}
    assert rows['all'][1] == '2' and rows['people'][1] == '1' and rows['vehicle'][1] == '1'
    for key in ('psnr', 'psnr_background', 'ssim_background', 'psnr_people', 'psnr_people_background',
                'ssim_vehicle', 'psnr_vehicle_background'):
        values = scalars[f'metrics/demo_val/{key}']
        assert values and all(step >= 6 and math.isfinite(value) for step, value in values), (key, values)
    background_share = scalars['routing/demo_val/background']
    assert background_share and all(0 < value < 1 for _, value in background_share), background_share
    pictures = sorted(p.name for p in (run_dir / 'visualization' / 'zidane').iterdir() if '_6' in p.name)
    assert pictures == ['zidane_6.png', 'zidane_6_background.png', 'zidane_6_gate.png']
    checkpoint = torch.load(run_dir / 'models' / 'net_g_latest.pth', weights_only=True)
    assert set(checkpoint) == {'params', 'params_ema'}
    assert {k.split('.')[1] for k in checkpoint['params']} == {'people', 'vehicle', 'background'}
    assert (workdir / 'tb_logger' / 'tiny_moesr').is_dir()

    # Test: an (untrained) YOLO segmenter as the gate, sparse execution; the whole inference path.
    gate = {'type': 'YOLOGate', 'categories_file': 'datasets/demo/categories.yml', 'model': 'yolov8n-seg.yaml',
            'class_map': 'coco', 'conf': 0.25, 'imgsz': 160}
    options = write_options('options/test_moesr.yml', workdir / 'test.yml', name='tiny_moesr', gate=gate,
                            network_g__experts=EXPERTS, network_ref=TINY_EXPERT,
                            path__pretrain_network_g='experiments/tiny_moesr/models/net_g_latest.pth',
                            path__pretrain_network_ref='experiments/tiny_moesr/models/net_ref_latest.pth')
    run_cli(['test', '-opt', options], workdir)
    results = workdir / 'results' / 'tiny_moesr'
    images = sorted(p.name for p in (results / 'visualization' / 'demo_val').iterdir())
    assert 'zidane_tiny_moesr.png' in images and 'zidane_tiny_moesr_gate.png' in images
    log = next(results.glob('test_*.log')).read_text()
    assert re.search(r'MoE-SR on demo_val .*gate \d+ ms', log)
    # The PSNR `basicsr test` reports (in its log only) is that of the SR images it wrote (Y, border 2).
    from basicsr.metrics import calculate_psnr
    written = sorted((results / 'visualization' / 'demo_val').glob('*_tiny_moesr.png'))
    hr = workdir / 'datasets' / 'demo' / 'val' / 'HR'
    expected = sum(calculate_psnr(cv2.imread(str(path)), cv2.imread(str(hr / path.name.replace('_tiny_moesr', ''))),
                                  crop_border=2, test_y_channel=True) for path in written) / len(written)
    reported = json.loads((results / 'metrics_demo_val.json').read_text())
    assert len(written) == 2 and reported['psnr'] == pytest.approx(expected, abs=1e-9), (reported, expected)
    assert {'psnr_background', 'psnr_reference', 'psnr_bicubic', 'psnr_people'} <= set(reported), sorted(reported)

    # `basicsr infer` on the user's own image: the option file's gate comes along, experts run sparsely.
    run_cli(['infer', '-opt', options, '-i', 'datasets/demo/val/LR_bicubic/X2/zidane.png', '-o', 'own',
             '--save_maps'], workdir)
    lr = cv2.imread(str(workdir / 'datasets/demo/val/LR_bicubic/X2/zidane.png'))
    sr = cv2.imread(str(workdir / 'own' / 'zidane.png'))
    assert sr.shape == (lr.shape[0] * 2, lr.shape[1] * 2, 3)
    assert cv2.imread(str(workdir / 'own' / 'zidane_gate.png')) is not None


def test_gate_and_network_categories_must_agree(demo_root, monkeypatch):
    monkeypatch.chdir(demo_root)
    opt = yaml.safe_load((ROOT / 'options/train_moesr.yml').read_text())
    opt['gate'] = {'type': 'LabelGate', 'categories': ['vehicle', 'people']}
    with pytest.raises(OptionError, match=r"gate categories \['vehicle', 'people'\] differ from the network "
                       r"experts \['people', 'vehicle'\]"):
        validate_options(opt, 'train_moesr.yml')


def test_validation_and_infer_run_the_same_gated_pipeline():
    """MoESRModel.test (the label gate given the batch) and `basicsr infer` (Upscaler) give the same pixels."""
    import numpy as np
    from basicsr.archs import build_network
    from basicsr.utils import tensor2img
    from moesr_arch.gating import build_gate
    from moesr_arch.inference import Upscaler, run_gated
    from moesr_arch.models.moesr_model import MoESRModel
    from moesr_arch.models.speedups import Speedups
    torch.manual_seed(0)
    net = build_network({'type': 'MoESRNet', 'experts': EXPERTS, 'categories': ['people', 'vehicle']})
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 26, 3)).astype(np.uint8)  # BGR, as read from a file
    category_map = torch.full((1, 20, 26), 2)
    category_map[0, 3:9, 4:12], category_map[0, 12:18, 14:24] = 0, 1
    data = {'category_map': category_map}
    gate = build_gate({'type': 'LabelGate', 'categories': ['people', 'vehicle']})
    model = MoESRModel.__new__(MoESRModel)  # only what test() reads, without BasicSR's set-up
    model.net_g, model.gate, model.device, model.opt = net, gate, torch.device('cpu'), {}
    model.speedups = Speedups(model.opt)  # no amp, channels_last or compile (outside training)
    model.lq = torch.from_numpy(image[:, :, ::-1] / 255.).permute(2, 0, 1)[None].float()
    model.data = data
    result = model.test()
    with torch.no_grad():
        direct = run_gated(net.eval(), gate, model.lq, data)
    assert torch.equal(model.output, direct.output) and torch.equal(result.output, direct.output)
    assert result.background is None and direct.background is None  # top-1: never on the whole image
    assert torch.equal(result.gate_weights, direct.gate_weights) and result.expert_pixels == direct.expert_pixels
    assert result.expert_pixels['people'] > 0 and result.expert_pixels['vehicle'] > 0
    infer = Upscaler(net, 2, 'cpu', tile=0, gate=lambda lq, _=None: gate(lq, data), progress=False)
    output, _ = infer.upscale_array(image, 255.)
    np.testing.assert_array_equal(output, tensor2img([model.output]))
