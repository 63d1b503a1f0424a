"""SeemoRe: official checkpoint layout, equivalence with spandrel, batched routing, sizes, cost, CLI."""
import copy
import re
from pathlib import Path

import pytest
import torch
from spandrel import ModelLoader
from spandrel.architectures.SeemoRe import SeemoRe as ReferenceSeemoRe

from conftest import ROOT, run_cli, tb_scalars, write_options
from moesr_arch.archs.seemore_arch import SEEMORE_PRESETS, SeemoRe
from moesr_arch.options import read_options
from moesr_arch.losses.fft_loss import FFTLoss
from moesr_arch.options import OptionError, check_network
from scripts.bench.measure import count_macs, diverse_router, seemore_macs


def randomized(model, seed=0):
    """``model`` with every parameter perturbed, so norms and biases are no longer trivially 1 and 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.02)
    return model


def reference_for(model, variant, scale):
    reference = ReferenceSeemoRe(scale=scale, **SEEMORE_PRESETS[variant])
    reference.load_state_dict(model.state_dict(), strict=True)
    return reference


@pytest.mark.parametrize('variant', ['T', 'B', 'L'])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_matches_spandrel_on_the_same_weights(variant, scale):
    torch.manual_seed(scale)
    model = randomized(SeemoRe(scale=scale, variant=variant))
    reference = reference_for(model, variant, scale)
    x = torch.rand(1, 3, 16, 19)  # 19: not a multiple of the calibration stride
    # Inference (sparse routing) for every preset; the dense training mixture once.
    for training in (False, True) if (variant, scale) == ('T', 2) else (False, ):
        model.train(training)
        reference.train(training)
        with torch.no_grad():
            out = model(x)
            assert out.shape == (1, 3, 16 * scale, 19 * scale)
            assert (out - reference(x)).abs().max() < 1e-5


def test_checkpoint_saved_by_basicsr_loads_in_spandrel(tmp_path):
    model = randomized(SeemoRe(scale=3, variant='B')).eval()
    path = tmp_path / 'net_g_latest.pth'
    torch.save({'params': model.state_dict(), 'params_ema': model.state_dict()}, path)
    descriptor = ModelLoader().load_from_file(path)
    assert descriptor.architecture.name == 'SeemoRe' and descriptor.scale == 3
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        assert (descriptor.model.eval()(x) - model(x)).abs().max() < 1e-5


def test_official_checkpoint_layout_loads_strictly(tmp_path):
    official = randomized(ReferenceSeemoRe(scale=4, **SEEMORE_PRESETS['L'])).eval()
    path = tmp_path / 'SeemoRe_L_X4.pth'
    torch.save({'params': official.state_dict()}, path)
    model = SeemoRe(scale=4, variant='L').eval()
    model.load_state_dict(torch.load(path, weights_only=True)['params'], strict=True)
    x = torch.rand(1, 3, 17, 16)
    with torch.no_grad():
        assert (model(x) - official(x)).abs().max() < 1e-5


def varied_images(count, size=20, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, size, size, generator=generator) * torch.rand(count, 3, 1, 1, generator=generator)


@pytest.mark.parametrize('topk', [1, 2])
def test_batch_equals_single_image_calls(topk):
    torch.manual_seed(0)
    images = varied_images(5, size=16)
    model = diverse_router(randomized(SeemoRe(scale=2, variant='T', num_layers=2, topk=topk)), images)
    routed = []
    with torch.no_grad():
        batched = model.forward_batch(images, routed)  # the grouped routing of a whole batch (as on a GPU)
        single = torch.cat([model(image[None]) for image in images])
        split = model(images)  # on a CPU, forward goes image by image
    assert (batched - single).abs().max() < 1e-5
    assert (split - single).abs().max() < 1e-5
    assert len(routed) == 2 and all(int(counts.sum()) == 5 * topk for counts in routed)
    for counts in routed:
        assert (counts > 0).sum() >= 2, 'the test batch must exercise more than one expert'
    if topk == 1:  # spandrel's official eval path is valid for one image at a time only
        reference = ReferenceSeemoRe(scale=2, **{**SEEMORE_PRESETS['T'], 'num_layers': 2}).eval()
        reference.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert (torch.cat([reference(image[None]) for image in images]) - batched).abs().max() < 1e-5


def test_inference_runs_only_the_selected_expert():
    images = varied_images(5, size=16)
    model = diverse_router(randomized(SeemoRe(scale=2, variant='T', num_layers=1)), images)
    calls = []
    for index, expert in enumerate(model.body[0].local_block.block.moe_layer.experts):
        expert.register_forward_hook(lambda module, args, out, index=index: calls.append((index, args[0].shape[0])))
    with torch.no_grad():
        model.forward_batch(images)
    assert sum(batch for _, batch in calls) == 5  # each image through exactly one expert
    assert 2 <= len(calls) <= 3  # one call per chosen expert, on all the images that chose it
    inference_calls = sorted(calls)
    model.train().set_mixture('sparse')  # training can run sparse too: the same calls
    calls.clear()
    model(images)
    assert sorted(calls) == inference_calls


def train_step(net, images, seed=0):
    """``(output, {name: gradient}, {name: parameter after one Adam step})`` of one training step."""
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-2)
    optimizer.zero_grad(set_to_none=True)
    out = net(images)
    (out - torch.rand(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)).abs().mean().backward()
    grads = {name: param.grad.clone() for name, param in net.named_parameters()}  # None fails here
    optimizer.step()
    return out.detach(), grads, {name: param.detach().clone() for name, param in net.named_parameters()}


@pytest.mark.parametrize('topk', [1, 2])
def test_sparse_training_equals_the_official_dense_mixture(topk):
    """Sparse training (each image through the experts it picked only) and the fused dense mixture give the
    official code's outputs, every parameter's gradient (zero, not none, for the experts no image picked) and
    Adam step; in float64, so that only a difference of formulation, not of rounding, could show."""
    images = varied_images(6, size=20)
    model = diverse_router(randomized(SeemoRe(scale=2, variant='T', num_layers=2, topk=topk)), images).double()
    official = ReferenceSeemoRe(scale=2, **{**SEEMORE_PRESETS['T'], 'num_layers': 2, 'topk': topk}).double()
    official.load_state_dict(model.state_dict(), strict=True)  # the checkpoint layout is the official one
    images = images.double()
    sparse = copy.deepcopy(model).set_mixture('sparse')
    with torch.no_grad():
        _, stats = sparse.train()(images, return_stats=True)
    if topk == 1:
        assert any(pixels == 0 for pixels in stats['expert_pixels'].values()), 'the test needs an idle expert'
    assert sum(pixels > 0 for pixels in stats['expert_pixels'].values()) > 2, 'and images on different experts'
    expected = train_step(official, images)
    for net in (sparse, copy.deepcopy(model).set_mixture('dense'), model):  # model: 'auto', dense in training
        for got, want in zip(train_step(net, images), expected):
            if isinstance(want, dict):
                assert got.keys() == want.keys()
                for name in want:
                    torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6, msg=name)
            else:
                torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_sparse_and_dense_training_agree_in_float32():
    images = varied_images(4, size=16)
    model = diverse_router(randomized(SeemoRe(scale=2, variant='T', num_layers=2)), images)
    sparse = train_step(copy.deepcopy(model).set_mixture('sparse'), images)
    dense = train_step(copy.deepcopy(model).set_mixture('dense'), images)
    torch.testing.assert_close(sparse[0], dense[0], rtol=0, atol=1e-5)
    for name, grad in dense[1].items():
        torch.testing.assert_close(sparse[1][name], grad, rtol=0, atol=1e-5, msg=name)
    with pytest.raises(ValueError, match='mixture'):
        model.set_mixture('fused')


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (15, 16), (17, 33), (31, 2)])
@pytest.mark.parametrize('variant', ['T', 'L'])
def test_any_input_size(size, variant):
    model = SeemoRe(scale=3, variant=variant, num_layers=2).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * 3, size[1] * 3)
    assert torch.isfinite(out).all()


def test_a_tile_of_a_decoded_image_runs_channels_last_inside():
    """A view of an HWC array (what tiled inference cuts) must get the fast channels-last path, same output."""
    model = SeemoRe(scale=2, variant='T', num_layers=1).eval()
    hwc = torch.rand(40, 50, 3)
    tile = hwc.permute(2, 0, 1)[None][..., 4:36, 6:40]  # batch stride 3: passes as channels-last, is not
    layouts = []
    model.conv_1.register_forward_hook(lambda module, args, out: layouts.append(out.stride(1) == 1))
    with torch.no_grad():
        out, reference = model(tile), model(tile.contiguous())
    assert layouts == [True, True]
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)


PAPER_T = {2: (220e3, 45e9, (360, 640)), 3: (225e3, 20e9, (240, 427)), 4: (232e3, 12e9, (180, 320))}


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_tiny_parameters_and_macs_match_the_paper(scale):
    params, macs, lr_size = PAPER_T[scale]  # GMACs for a 1280x720 output
    model = SeemoRe(scale=scale, variant='T')
    assert abs(sum(p.numel() for p in model.parameters()) / params - 1) < 0.02
    assert abs(seemore_macs(model, lr_size) / macs - 1) < 0.02


@pytest.mark.parametrize('variant', ['T', 'L'])
def test_analytic_macs_equal_hook_count(variant):
    model = SeemoRe(scale=3, variant=variant, num_layers=3)
    for size in [(21, 37), (6, 9)]:
        x = torch.rand(1, 3, *size)
        measured = count_macs(model, x)
        with torch.no_grad():
            _, stats = model(x, return_stats=True)
        taken = [[int(key.split('rank')[1]) for key, pixels in stats['expert_pixels'].items()
                  if key.startswith(f'layer{i}/') and pixels > 0] for i in range(len(model.body))]
        assert measured == seemore_macs(model, size, taken)


def test_variant_presets_and_overrides():
    large = SeemoRe(scale=2, variant='L')
    assert len(large.body) == 16 and large.conv_1.out_channels == 48 and large.recursive == 1
    custom = SeemoRe(scale=2, variant='B', num_layers=2, lr_space='linear', num_experts=4)
    assert len(custom.body) == 2 and custom.conv_1.out_channels == 48
    assert [e.rank for e in custom.body[0].local_block.block.moe_layer.experts] == [2, 3, 4, 5]
    with pytest.raises(ValueError, match='variant'):
        SeemoRe(variant='XL')
    with pytest.raises(ValueError, match='lr_space'):
        SeemoRe(lr_space='cubic')
    with pytest.raises(ValueError, match='topk'):
        SeemoRe(topk=4)


@pytest.mark.parametrize('options, message', [
    ({'lr_space': 'cubic'}, "x.yml: network_g.lr_space must be one of 'linear', 'exp' or 'double', got 'cubic'"),
    ({'topk': 4}, r'x.yml: network_g.topk \(4\) must not exceed num_experts \(3\)'),  # num_experts from the preset
    ({'variant': 'B', 'num_experts': 2, 'topk': 3}, r'network_g.topk \(3\) must not exceed num_experts \(2\)'),
    ({'num_layers': 0}, 'x.yml: network_g.num_layers must be at least 1, got 0'),
    ({'use_shuffle': 'yes'}, "x.yml: network_g.use_shuffle must be true or false, got 'yes'"),
])
def test_option_files_are_checked_before_the_network_is_built(options, message):
    with pytest.raises(OptionError, match=message):
        check_network({'type': 'SeemoRe', **options}, 'network_g', 'x.yml')


def test_routing_statistics_are_return_values():
    """``return_stats`` gives each layer's pixels per rank expert for this call; the modules keep nothing."""
    model = diverse_router(SeemoRe(scale=2, variant='T', num_layers=2), varied_images(4, size=16))
    before = {name: set(vars(module)) for name, module in model.named_modules()}
    images = varied_images(4, size=16)[:, :, :12, :14]
    with torch.no_grad():
        out, stats = model(images, return_stats=True)
        assert torch.equal(out, model(images))
    pixels = stats['expert_pixels']
    assert list(pixels) == [f'layer{i}/rank{r}' for i in range(2) for r in (2, 4, 8)]
    for i in range(2):  # every image routed once per layer: its 12 x 14 pixels
        shares = [pixels[f'layer{i}/rank{r}'] for r in (2, 4, 8)]
        assert sum(shares) == 4 * 12 * 14 and all(value % (12 * 14) == 0 for value in shares)
        assert sum(value > 0 for value in shares) >= 2
    model.train()
    _, stats = model(images[:2], return_stats=True)  # training routes (softmax-weighted top-k) too
    assert sum(stats['expert_pixels'][f'layer0/rank{r}'] for r in (2, 4, 8)) == 2 * 12 * 14
    assert {name: set(vars(module)) for name, module in model.named_modules()} == before


def test_fft_loss():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 10), torch.rand(2, 3, 8, 10)
    loss = FFTLoss(loss_weight=0.1)
    assert loss(target, target) == 0
    spectrum = torch.fft.rfft2(pred - target)
    expected = 0.1 * torch.cat([spectrum.real, spectrum.imag]).abs().mean()
    assert torch.allclose(loss(pred, target), expected)
    with pytest.raises(ValueError, match='same shape'):
        loss(pred, target[..., :5])


def option_files():
    return sorted((ROOT / 'options').glob('*_SeemoRe_*.yml')) + [ROOT / 'options' / 'train_seemore_demo.yml']


def test_option_files_validate(tmp_path, monkeypatch, demo_root):
    """Every SeemoRe option file passes the option check once its data and weights exist."""
    names = [p.name for p in option_files()]
    assert {f'train_SeemoRe_T_x{s}.yml' for s in (2, 3, 4)} <= set(names)
    assert {f'test_SeemoRe_{v}_x{s}.yml' for v in 'TBL' for s in (2, 3, 4)} <= set(names)
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'datasets').mkdir()
    (tmp_path / 'datasets' / 'demo').symlink_to(demo_root / 'datasets' / 'demo', target_is_directory=True)
    for path in option_files():
        text = path.read_text()
        # Stand-ins for DF2K, the benchmark sets and released or trained weights.
        for folder in re.findall(r'dataroot_\w+: (datasets/\S+)', text):
            Path(folder).mkdir(parents=True, exist_ok=True)
        for weights in re.findall(r'pretrain_network_g: (\S+\.pth)', text):
            Path(weights).parent.mkdir(parents=True, exist_ok=True)
            Path(weights).touch()
        read_options(str(path), is_train=path.name.startswith('train'))


def test_demo_training_runs_and_logs_routing(workdir):
    options = write_options(
        'options/train_seemore_demo.yml', workdir / 'train.yml', name='tiny_seemore', train__total_iter=2,
        datasets__train__batch_size_per_gpu=2, datasets__train__gt_size=32, network_g__network__num_layers=1,
        val__val_freq=2, logger__print_freq=1, logger__save_checkpoint_freq=2, train__scheduler={'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5})
    run_cli(['train', '-opt', options], workdir)
    run_dir = workdir / 'experiments' / 'tiny_seemore'
    scalars = tb_scalars(workdir / 'tb_logger' / 'tiny_seemore')
    assert [step for step, _ in scalars['losses/l_fft']] == [1, 2], sorted(scalars)
    psnr = scalars['metrics/demo_val/psnr']
    assert psnr and all(10 < value < 60 for _, value in psnr), psnr
    share = scalars['routing/demo_val/layer0/rank8']  # share of routing decisions to one expert
    assert share and all(0 <= value <= 1 for _, value in share), share
    checkpoint = torch.load(run_dir / 'models' / 'net_g_latest.pth', weights_only=True)
    # The demo wraps SeemoRe in BicubicResidual: its SeemoRe weights, under network., open in spandrel.
    inner = {key[len('network.'):]: value for key, value in checkpoint['params'].items() if key.startswith('network.')}
    descriptor = ModelLoader().load_from_state_dict(inner)
    assert descriptor.architecture.name == 'SeemoRe'
