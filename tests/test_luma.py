"""Y-channel networks (the published VDSR) on colour images: Y through the network, Cb and Cr by MATLAB
bicubic, the same in `basicsr infer` and `basicsr test`; grey images stay grey."""
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.metrics import calculate_psnr
from basicsr.utils.color_util import rgb2ycbcr, ycbcr2rgb
from basicsr.utils.matlab_functions import imresize

from conftest import run_cli, write_options
from moesr_arch.inference import Upscaler, describe
from moesr_arch.inference.luma import on_luma

Y_VDSR = {'type': 'VDSR', 'num_in_ch': 1, 'num_out_ch': 1, 'num_feat': 8, 'num_layer': 20, 'bias': False}


def published_layout(net):
    """The VDSR state in pytorch-vdsr's parameter names (``input``, ``residual_layer.<i>.conv``, ``output``)."""
    state = net.state_dict()
    last = len(state) - 1
    return {'input.weight': state['body.0.weight'], 'output.weight': state[f'body.{2 * last}.weight'],
            **{f'residual_layer.{i}.conv.weight': state[f'body.{2 * (i + 1)}.weight'] for i in range(last - 1)}}


def reference_vdsr(rgb, layers, scale):
    """VDSR's colour result computed from basicsr's own functions: rgb2ycbcr, imresize of Y, Cb and Cr, the
    published convolutions on the upsampled Y (ReLU between, the input added back), ycbcr2rgb."""
    ycbcr = imresize(rgb2ycbcr(rgb), scale)
    y = torch.from_numpy(np.ascontiguousarray(ycbcr[:, :, 0]))[None, None]
    x = F.relu(F.conv2d(y, layers['input.weight'], padding=1))
    for i in range(len(layers) - 2):
        x = F.relu(F.conv2d(x, layers[f'residual_layer.{i}.conv.weight'], padding=1))
    ycbcr[:, :, 0] = (y + F.conv2d(x, layers['output.weight'], padding=1))[0, 0].numpy()
    return ycbcr2rgb(ycbcr)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_a_y_network_on_a_colour_image_is_vdsrs_colour_pipeline(scale):
    torch.manual_seed(scale)
    net = build_network(dict(Y_VDSR, upscale=scale)).eval()
    with torch.no_grad():  # a residual that matters (an untrained VDSR is bicubic)
        net.body[-1].weight.normal_(std=0.3)
    rgb = np.random.RandomState(scale).rand(13, 17, 3).astype(np.float32)
    with torch.no_grad():
        ours = on_luma(net)(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        expected = reference_vdsr(rgb, published_layout(net), scale)
    assert ours.shape == (13 * scale, 17 * scale, 3)
    assert np.abs(ours - expected).max() < 1e-5
    assert np.abs(ours - imresize(rgb, scale)).max() > 0.01  # the network did something


def test_capabilities_read_the_input_channels_of_the_network():
    assert describe(build_network(dict(Y_VDSR, upscale=2))).in_channels == 1
    assert describe(build_network({'type': 'VDSR', 'num_feat': 8, 'num_layer': 3, 'upscale': 2})).in_channels == 3


def test_a_y_network_in_infer_keeps_a_grey_image_grey(tmp_path):
    torch.manual_seed(0)
    net = build_network(dict(Y_VDSR, num_layer=3, upscale=2)).eval()
    grey = (np.random.RandomState(0).rand(12, 10) * 255).round().astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'grey.png'), grey)
    output, _ = Upscaler(net, 2, 'cpu', tile=0, progress=False).upscale_file(tmp_path / 'grey.png')
    assert output.shape == (24, 20) and output.dtype == np.uint8
    with torch.no_grad():  # the grey values go through the network as they are (1 channel in, 1 out)
        expected = net(torch.from_numpy(grey / 255.).float()[None, None])[0, 0].clamp(0, 1).numpy()
    np.testing.assert_array_equal(output, np.round(expected * 255))


def test_infer_and_test_run_a_y_network_alike_on_colour_images(workdir):
    """`basicsr test` with the published option file (a tiny VDSR, the demo photos) writes the pixels
    `basicsr infer` writes, and its metrics are theirs."""
    torch.manual_seed(0)
    net = build_network(dict(Y_VDSR, num_layer=4, upscale=2)).eval()
    torch.save({'params': net.state_dict()}, workdir / 'y.pth')
    options = write_options('options/test_vdsr_published_x2.yml', workdir / 'y.yml', name='y_vdsr',
                            network_g__num_feat=8, network_g__num_layer=4, path__pretrain_network_g='y.pth',
                            datasets__test_1__name='demo_val', datasets__test_1__filename_tmpl='{}',
                            datasets__test_1__dataroot_gt='datasets/demo/val/HR',
                            datasets__test_1__dataroot_lq='datasets/demo/val/LR_bicubic/X2', val__save_img=True,
                            num_gpu=0)
    run_cli(['test', '-opt', options], workdir)
    written = sorted((workdir / 'results' / 'y_vdsr' / 'visualization' / 'demo_val').iterdir())
    assert written
    psnrs = []
    for path in written:
        stem = path.name.replace('_y_vdsr.png', '')
        lr = workdir / 'datasets' / 'demo' / 'val' / 'LR_bicubic' / 'X2' / f'{stem}.png'
        inferred, _ = Upscaler(net, 2, 'cpu', tile=0, progress=False).upscale_file(lr)
        np.testing.assert_array_equal(cv2.imread(str(path)), inferred)
        assert np.ptp(inferred.astype(int), axis=2).max() > 10  # colour, not grey
        hr = cv2.imread(str(workdir / 'datasets' / 'demo' / 'val' / 'HR' / f'{stem}.png'))
        psnrs.append(calculate_psnr(inferred, hr, crop_border=2, test_y_channel=True))
    reported = json.loads((workdir / 'results' / 'y_vdsr' / 'metrics_demo_val.json').read_text())
    assert reported['psnr'] == pytest.approx(np.mean(psnrs), abs=1e-9)
