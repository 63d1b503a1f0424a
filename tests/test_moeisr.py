"""MoEISR: arbitrary-scale shapes, sparse per-pixel routing, balance loss, data, options and a real training."""
import re
import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, checked_dataset, run_cli, tb_scalars, write_options
from moesr_arch.archs.moeisr_arch import MoEISR
from moesr_arch.data.random_scale_dataset import RandomScaleSRDataset
from moesr_arch.losses.expert_balance_loss import ExpertBalanceLoss
from moesr_arch.options import OptionError, load_options, validate_options


def tiny_moeisr(seed=0, **kwargs):
    """A tiny MoEISR whose mapper is made decisive, so that every expert gets some pixels."""
    torch.manual_seed(seed)
    net = MoEISR(**{'num_feat': 8, 'num_block': 1, 'hidden_dim': 16, 'mapper_dim': 8, **kwargs}).eval()
    with torch.no_grad():
        net.mapper_mlp[-1].weight.mul_(20)
    return net


@pytest.mark.parametrize('scale', [1, 2, 3, 4, 1.5, 2.5, 3.7, 6, 8, 12])
def test_upscale_returns_round_scale_times_input(scale):
    net = tiny_moeisr()
    lq = torch.rand(2, 3, 7, 9)
    with torch.no_grad():
        sr, stats = net.upscale(lq, scale, return_stats=True)
    assert sr.shape == (2, 3, round(7 * scale), round(9 * scale))
    assert 0 <= sr.min() and sr.max() <= 1
    assert stats['expert_map'].shape == (2, round(7 * scale), round(9 * scale))
    assert sum(stats['expert_pixels'].values()) == stats['expert_map'].numel()


def test_forward_uses_the_scale_attribute_and_queries_in_training():
    net = tiny_moeisr(scale=2.5)
    with torch.no_grad():
        assert net(torch.rand(1, 3, 6, 6)).shape == (1, 3, 15, 15)
    net.train()
    coord, cell = torch.rand(2, 40, 2) * 2 - 1, torch.full((2, 40, 2), 0.05)
    values, probs = net(torch.rand(2, 3, 6, 6), coord, cell, return_routing=True)
    assert values.shape == (2, 40, 3)
    assert probs.shape == (2, 40, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 40))
    values.mean().backward()  # straight-through Gumbel: the mapper learns from the reconstruction loss
    assert net.mapper_mlp[0].weight.grad.abs().sum() > 0


def test_inference_runs_only_each_pixels_expert():
    net = tiny_moeisr()
    rows = [0] * len(net.experts)
    for index, expert in enumerate(net.experts):
        def count(module, inputs, output, index=index):  # evaluations = rows of every leading dimension
            rows[index] += inputs[0].shape[:-1].numel()
        expert.register_forward_hook(count)
    lq = torch.rand(1, 3, 8, 10)
    with torch.no_grad():
        sr, stats = net.upscale(lq, 3, return_stats=True)
    expert_map = stats['expert_map']
    pixels = [int((expert_map == i).sum()) for i in range(len(net.experts))]
    assert sum(p > 0 for p in pixels) >= 3, pixels  # the routing really is mixed
    assert rows == [4 * p for p in pixels]  # 4 local-ensemble codes per pixel, one expert each
    assert list(stats['expert_pixels'].values()) == pixels
    assert list(stats['expert_pixels']) == ['expert0_1hidden', 'expert1_2hidden', 'expert2_3hidden', 'expert3_4hidden']
    assert stats['flops'] < stats['flops_deepest']

    # The sparse result equals decoding every pixel densely with every expert and keeping its choice.
    feat, mapper_feat = net.encode(lq)
    h, w = sr.shape[-2:]
    from moesr_arch.archs.moeisr_arch import make_coord
    coord = make_coord((h, w))[None]
    cell = torch.tensor([2 / h, 2 / w]).expand_as(coord)
    with torch.no_grad():
        inputs, weights = net._decoder_inputs(feat, coord, cell)
        dense = torch.stack([(e(inputs) * weights[..., None]).sum(0) for e in net.experts], -1)
    picked = dense.gather(-1, expert_map.view(1, -1, 1, 1).expand(1, h * w, 3, 1))[..., 0]
    reference = (picked * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 1).reshape(1, 3, h, w)
    assert torch.allclose(sr, reference, atol=1e-5)


def test_routing_bias_moves_pixels_to_cheaper_experts():
    net = tiny_moeisr()
    lq = torch.rand(1, 3, 8, 8)
    flops = {}
    for bias in (-1000.0, 0.0, 1000.0):
        net.routing_bias = bias
        with torch.no_grad():
            _, stats = net.upscale(lq, 2, return_stats=True)
        flops[bias] = stats['flops']
        counts = list(stats['expert_pixels'].values())
        if bias == 1000.0:
            assert counts[1:] == [0, 0, 0]
        if bias == -1000.0:
            assert counts[:-1] == [0, 0, 0]
    assert flops[1000.0] < flops[0.0] < flops[-1000.0]


def test_chunked_queries_equal_unchunked():
    net = tiny_moeisr()
    lq = torch.rand(2, 3, 6, 7)
    with torch.no_grad():
        whole, whole_stats = net.upscale(lq, 2.7, return_stats=True)
        net.chunk_size = 13
        chunked, chunked_stats = net.upscale(lq, 2.7, return_stats=True)
    assert torch.allclose(whole, chunked, atol=1e-6)
    assert torch.equal(whole_stats['expert_map'], chunked_stats['expert_map'])


def test_a_call_leaves_no_state_behind_statistics_are_return_values():
    net = tiny_moeisr(scale=2)
    before = {key: sorted(value) if isinstance(value, dict) else value for key, value in vars(net).items()}
    lq = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        sr = net(lq)
        again, stats = net(lq, return_stats=True)
        net.upscale(lq, 3, return_stats=True)
    net.train()
    coord, cell = torch.rand(1, 10, 2) * 2 - 1, torch.full((1, 10, 2), 0.1)
    values, probs, query_stats = net(lq, coord, cell, return_routing=True, return_stats=True)
    net.eval()
    after = {key: sorted(value) if isinstance(value, dict) else value for key, value in vars(net).items()}
    assert after.keys() == before.keys() and after == before  # no attribute, buffer or module added or changed
    assert torch.equal(sr, again) and sr.shape == (1, 3, 10, 10)
    assert sum(stats['expert_pixels'].values()) == 100 and 0 < stats['flops'] < 1.1 * stats['flops_deepest']
    assert values.shape == (1, 10, 3) and probs.shape == (1, 10, 4)
    assert query_stats['expert_map'].shape == (1, 10) and sum(query_stats['expert_pixels'].values()) == 10
    for name in ('last_decode', 'routing_statistics', 'reset_routing_statistics'):
        assert not hasattr(net, name)


def test_external_encoder_body_is_used_without_its_upsampler():
    net = MoEISR(encoder={'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                          'upscale': 2}, hidden_dim=8, mapper_dim=4).eval()
    assert not hasattr(net.encoder.net, 'upsample')
    with torch.no_grad():
        assert net.upscale(torch.rand(1, 3, 5, 6), 3.5).shape == (1, 3, 18, 21)
    with pytest.raises(ValueError, match='not supported'):
        MoEISR(encoder={'type': 'VDSR', 'num_layer': 2})


def test_balance_loss_is_zero_when_balanced_and_pushes_collapsed_routing_apart():
    loss = ExpertBalanceLoss(loss_weight=1.0)
    balanced = torch.eye(4).repeat(3, 1)
    assert loss(balanced).item() == pytest.approx(0)
    assert loss(torch.tensor([[1., 0, 0, 0]] * 8)).item() == pytest.approx(3)  # K - 1

    logits = torch.tensor([[2., 0, 0, 0]] * 16, requires_grad=True)
    before = loss(logits.softmax(-1))
    before.backward()
    with torch.no_grad():
        logits -= 1.0 * logits.grad
    assert logits.softmax(-1)[:, 0].mean() < before.new_tensor(torch.tensor([2., 0, 0, 0]).softmax(-1)[0])
    assert 0 < before.item() < 3

    shares = ExpertBalanceLoss(target_shares=[0.7, 0.1, 0.1, 0.1])
    routed = torch.eye(4)[torch.tensor([0] * 7 + [1, 2, 3])]
    assert shares(routed).item() == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match='summing to 1'):
        ExpertBalanceLoss(target_shares=[0.5, 0.1])


def write_photo(folder, name, height, width, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / name), image)


def test_random_scale_dataset_train_and_val_samples(tmp_path):
    write_photo(tmp_path / 'HR', 'a.png', 80, 90)
    opt = {'name': 'rs', 'type': 'RandomScaleSRDataset', 'phase': 'train', 'dataroot_gt': str(tmp_path / 'HR'),
           'io_backend': {'type': 'disk'}, 'lq_size': 12, 'scale_min': 1, 'scale_max': 4, 'sample_q': 100}
    sample = RandomScaleSRDataset(checked_dataset(opt))[0]
    assert sample['lq'].shape == (3, 12, 12)
    assert sample['coord'].shape == sample['cell'].shape == (100, 2) and sample['gt'].shape == (100, 3)
    assert 1 <= sample['scale'] <= 4 and sample['coord'].abs().max() < 1
    size = round(12 * sample['scale'])
    assert torch.allclose(sample['cell'], torch.full((100, 2), 2 / size))

    # Without augmentation each query's value is the HR pixel at its coordinate.
    fixed = RandomScaleSRDataset(checked_dataset({**opt, 'scale_min': 2, 'scale_max': 2, 'use_hflip': False,
                                                  'use_rot': False}))
    sample = fixed[0]
    hr = cv2.imread(str(tmp_path / 'HR' / 'a.png'))[:, :, ::-1].astype(np.float32) / 255
    rows, cols = ((sample['coord'] + 1) / 2 * 24 - 0.5).round().long().unbind(-1)
    offsets = [(y, x) for y in range(80 - 23) for x in range(90 - 23)
               if np.allclose(hr[y + rows, x + cols], sample['gt'].numpy(), atol=1e-6)]
    assert offsets  # the values come from one 24x24 crop

    val = RandomScaleSRDataset(checked_dataset({**opt, 'phase': 'val', 'scale': 2.5}))[0]
    assert val['lq'].shape == (3, 32, 36) and val['gt'].shape == (3, 80, 90)
    with pytest.raises(ValueError, match='sample_q'):
        RandomScaleSRDataset(checked_dataset({**opt, 'sample_q': 1000}))
    with pytest.raises(ValueError, match='needs a positive scale'):
        RandomScaleSRDataset(checked_dataset({**opt, 'phase': 'val'}))


def test_random_scale_dataset_reads_lmdb(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    write_photo(tmp_path / 'HR', 'a.png', 40, 50)
    make_lmdb_from_imgs(str(tmp_path / 'HR'), str(tmp_path / 'HR.lmdb'), ['a.png'], ['a'])
    dataset = RandomScaleSRDataset(checked_dataset({'name': 'rs', 'type': 'RandomScaleSRDataset', 'phase': 'train',
                                                    'dataroot_gt': str(tmp_path / 'HR.lmdb'),
                                                    'io_backend': {'type': 'lmdb'}, 'lq_size': 8, 'sample_q': 64}))
    assert len(dataset) == 1 and dataset[0]['lq'].shape == (3, 8, 8) and dataset[0]['gt'].shape == (64, 3)


def div2k_skeleton(root):
    """Empty DIV2K folders and dummy checkpoints, so that the paths of the options exist."""
    for sub in ('DIV2K_train_HR', 'DIV2K_valid_HR', *(f'DIV2K_valid_LR_bicubic/X{s}' for s in (2, 3, 4))):
        (root / 'datasets' / 'DIV2K' / sub).mkdir(parents=True, exist_ok=True)
    for run in ('train_MoEISR_EDSR_baseline', 'demo_MoEISR_f32b4'):
        checkpoint = root / 'experiments' / run / 'models' / 'net_g_latest.pth'
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.touch()


@pytest.mark.parametrize('name', ['train_moeisr_demo', 'train_moeisr_edsr_baseline', 'test_moeisr_demo',
                                  *(f'test_moeisr_x{s}' for s in (2, 3, 4, 6, 8, 12))])
def test_option_files_validate(name, workdir, monkeypatch):
    div2k_skeleton(workdir)
    monkeypatch.chdir(workdir)
    path = ROOT / 'options' / f'{name}.yml'
    validate_options(load_options(str(path)), str(path), is_train=name.startswith('train'))


def test_options_reject_a_top_level_scale_hiding_per_set_scales(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    opt = load_options(str(ROOT / 'options' / 'train_moeisr_demo.yml'))
    opt['scale'] = 2
    with pytest.raises(OptionError, match=r'datasets.val_x\d.scale is \d but the top-level scale 2'):
        validate_options(opt, 'demo.yml')
    opt = load_options(str(ROOT / 'options' / 'train_moeisr_demo.yml'))
    opt['network_g']['encoder'] = {'type': 'EDSR', 'num_fet': 8}
    with pytest.raises(OptionError, match="network_g.encoder.num_fet"):
        validate_options(opt, 'demo.yml')


def small_val_set(workdir):
    """48x48 corners of the demo validation photos with their x2/x4 LR, to keep validation quick."""
    import sys
    sys.path.insert(0, str(ROOT / 'scripts' / 'data_preparation'))
    from make_demo_dataset import bicubic_downscale
    root = workdir / 'small_val'
    for path in sorted((workdir / 'datasets' / 'demo' / 'val' / 'HR').glob('*.png')):
        hr = cv2.imread(str(path))[:48, :48]
        for folder, image in (('HR', hr), ('X2', bicubic_downscale(hr, 2)), ('X4', bicubic_downscale(hr, 4))):
            (root / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / folder / path.name), image)
    return root


def test_training_validates_at_several_scales_with_flops_and_expert_maps(workdir):
    val = small_val_set(workdir)
    options = write_options(
        'options/train_moeisr_demo.yml', workdir / 'train.yml', name='tiny_moeisr', train__total_iter=2,
        datasets__train__batch_size_per_gpu=2, datasets__train__lq_size=12, datasets__train__sample_q=64,
        datasets__val_x2__dataroot_gt=str(val / 'HR'), datasets__val_x2__dataroot_lq=str(val / 'X2'),
        datasets__val_x4__dataroot_gt=str(val / 'HR'), datasets__val_x4__dataroot_lq=str(val / 'X4'),
        datasets__val_x8__dataroot_gt=str(val / 'HR'),
        network_g__num_feat=8, network_g__num_block=1, network_g__hidden_dim=16, network_g__mapper_dim=8,
        logger__print_freq=1, logger__save_checkpoint_freq=2, train__scheduler={'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5})
    run_cli(['train', '-opt', options], workdir)
    run_dir = workdir / 'experiments' / 'tiny_moeisr'
    log = next(run_dir.glob('train_*.log')).read_text()
    scalars = tb_scalars(workdir / 'tb_logger' / 'tiny_moeisr')
    assert [step for step, _ in scalars['losses/l_pix']] == [1, 2]
    assert [step for step, _ in scalars['losses/l_balance']] == [1, 2]
    for scale in (2, 4, 8):
        psnr = scalars[f'metrics/demo_val_x{scale}/psnr']  # one PSNR per validation scale
        assert psnr and all(10 < value < 60 for _, value in psnr), (scale, psnr)
        assert re.search(rf'demo_val_x{scale} zidane x{scale} \(48x48\): decoder \S+FLOPs vs \S+FLOPs', log)
        assert f'Routing on demo_val_x{scale}' in log
        maps = sorted((run_dir / 'visualization' / f'demo_val_x{scale}').glob('*/*_experts.png'))
        assert len(maps) == 2  # zidane, motorcycle
        assert cv2.imread(str(maps[0])).shape[:2] == (288, 288)  # enlarged x6 for a readable legend
    assert set(torch.load(run_dir / 'models' / 'net_g_latest.pth', weights_only=True)) == {'params', 'params_ema'}

    # The test pipeline at a non-integer scale: SR images of round(3.5 x floor(48 / 3.5)) pixels, and maps.
    options = write_options(
        'options/test_moeisr_demo.yml', workdir / 'test.yml', name='tiny_moeisr_test',
        datasets__test_1__dataroot_gt=str(val / 'HR'), network_g__num_feat=8, network_g__num_block=1,
        network_g__hidden_dim=16, network_g__mapper_dim=8,
        path__pretrain_network_g='experiments/tiny_moeisr/models/net_g_latest.pth')
    run_cli(['test', '-opt', options], workdir)
    out = workdir / 'results' / 'tiny_moeisr_test' / 'visualization' / 'demo_val'
    assert cv2.imread(str(out / 'zidane_tiny_moeisr_test.png')).shape == (46, 46, 3)
    assert (out / 'zidane_tiny_moeisr_test_experts.png').is_file()


class Replicas(torch.nn.Module):
    """What DataParallel does to a module on several GPUs: each call runs on a copy, whose attributes
    are thrown away afterwards (on the CPU DataParallel calls the module itself, hiding the problem)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        import copy
        return copy.deepcopy(self.module)(*args, **kwargs)


def test_balance_loss_survives_dataparallel_replicas():
    from moesr_arch.losses.expert_balance_loss import ExpertBalanceLoss
    from moesr_arch.models.moeisr_model import MoEISRModel
    model = MoEISRModel.__new__(MoEISRModel)  # only the training-step parts, without BasicSR's set-up
    model.opt = {'train': {}}
    model.net_g = Replicas(tiny_moeisr().train())
    model.cri_pix, model.cri_perceptual = torch.nn.L1Loss(), None
    model.extra_losses, model.balance_losses = {}, {'balance': ExpertBalanceLoss()}
    model.get_bare_model = lambda net: net.module
    model.lq, model.coord = torch.rand(2, 3, 6, 6), torch.rand(2, 40, 2) * 2 - 1
    model.cell, model.gt = torch.full((2, 40, 2), 0.05), torch.rand(2, 40, 3)
    losses = model.training_losses(1)
    assert set(losses) == {'l_pix', 'l_balance'}
    assert losses['l_balance'].requires_grad
