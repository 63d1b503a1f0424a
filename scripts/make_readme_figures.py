"""Make the README's pictures: a before/after crop and the MoE-SR gate overlays of the demo photos.

Runs the network of a test option file (the demo EDSR after ``make demo-edsr`` by default) with the same
engine as ``basicsr infer`` on one demo validation image and writes ``docs/images/before_after.png``
with the Y-PSNR of each crop in its caption; ``docs/images/gate_overlays.png`` shows the label gate's
category regions on the demo validation photos (what the MoE-SR experts are given), and
``docs/images/yolo_gate_overlays.png`` what the demo YOLO gate (``experiments/gate_demo/gate.pt``) finds there;
``docs/images/moeisr_expert_maps.png`` the demo MoEISR's decoder choice per output pixel at two routing biases.

Usage: ``python scripts/make_readme_figures.py [-opt options/test_edsr_demo.yml] [--model_path CKPT]
[--image motorcycle] [--crop Y X SIZE]``
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def caption(tile, text, height=22):
    bar = np.full((height, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([tile, bar])


def make_before_after(opt, model_path, image, crop, output, zoom=2, data_root='datasets/demo/val'):
    import moesr_arch  # noqa: F401
    from basicsr.metrics import calculate_psnr
    from basicsr.utils.matlab_functions import imresize

    from moesr_arch.inference import Upscaler, build_from_options
    network, scale, _ = build_from_options(opt, model_path)
    scale = int(scale)
    hr = cv2.imread(str(Path(data_root) / 'HR' / f'{image}.png'))
    lr = cv2.imread(str(Path(data_root) / 'LR_bicubic' / f'X{scale}' / f'{image}.png'))
    if hr is None or lr is None:
        raise FileNotFoundError(f'{data_root}: no {image}.png in HR/ or LR_bicubic/X{scale}/ (run make demo-data)')
    sr, _ = Upscaler(network, scale, 'cpu', tile=256, tile_overlap=16, progress=False).upscale_array(lr, 255.)
    bicubic = np.clip(np.round(imresize(lr / 255., scale) * 255), 0, 255).astype(np.uint8)
    y, x, size = crop
    if y < 0 or x < 0 or y + size > hr.shape[0] or x + size > hr.shape[1]:
        raise ValueError(f'--crop {y} {x} {size} leaves the {hr.shape[1]}x{hr.shape[0]} image {image}')
    tiles = []
    for name, picture in (('bicubic', bicubic), ('SR', sr), ('HR', hr)):
        piece = picture[y:y + size, x:x + size]
        big = cv2.resize(piece, (size * zoom, size * zoom), interpolation=cv2.INTER_NEAREST)
        if name != 'HR':
            name += f' {calculate_psnr(piece, hr[y:y + size, x:x + size], 0, test_y_channel=True):.2f} dB (Y)'
        tiles.append(caption(big, name))
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    figure = np.hstack([tiles[0], gap, tiles[1], gap, tiles[2]])
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(output), figure, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return output


def label_gate_weights(data_root, categories):
    """``weights(name, lr)``: the label gate's one-hot weights of a demo validation photo."""
    import torch

    from moesr_arch.data.category_labels import rasterize_category_map, read_labels

    def weights(name, lr):
        regions = read_labels(Path(data_root) / 'val' / 'labels' / f'{name}.txt', len(categories))
        category_map = torch.from_numpy(rasterize_category_map(regions, *lr.shape[:2], len(categories)))
        return torch.nn.functional.one_hot(category_map, len(categories) + 1).permute(2, 0, 1).float()
    return weights


def yolo_gate_weights(data_root, gate_weights, imgsz=256, conf=0.25):
    """``weights(name, lr)``: what the trained YOLO gate (as in ``options/test_moesr.yml``) gives a photo."""
    import torch

    from moesr_arch.gating import build_gate
    gate = build_gate({'type': 'YOLOGate', 'categories_file': str(Path(data_root) / 'categories.yml'),
                       'weights': str(gate_weights), 'class_map': 'auto', 'conf': conf, 'imgsz': imgsz})

    def weights(name, lr):
        return gate(torch.from_numpy(lr / 255.).permute(2, 0, 1)[None].float())[0]
    return weights


def make_gate_overlays(output, gate_weights=None, data_root='datasets/demo',
                       names=('zidane', 'motorcycle'), height=180):
    """Overlays of the demo validation photos: the label gate's regions, or the YOLO gate's with ``gate_weights``."""
    import moesr_arch  # noqa: F401

    from moesr_arch.data.categories import load_categories
    from moesr_arch.inference.maps import draw_overlay
    categories = load_categories(Path(data_root) / 'categories.yml')
    weights = yolo_gate_weights(data_root, gate_weights) if gate_weights else label_gate_weights(data_root, categories)
    panels = []
    for name in names:
        bgr = cv2.imread(str(Path(data_root) / 'val' / 'LR_bicubic' / 'X2' / f'{name}.png'))
        lr = np.ascontiguousarray(bgr[..., ::-1])
        panel = draw_overlay(lr, weights(name, lr), categories)[..., ::-1]
        panels.append(cv2.resize(panel, (round(panel.shape[1] * height / panel.shape[0]), height),
                                 interpolation=cv2.INTER_AREA))
    gap = np.full((height, 6, 3), 255, np.uint8)
    figure = np.hstack([p for panel in panels for p in (panel, gap)][:-1])
    cv2.imwrite(str(output), figure, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return output


def make_expert_maps(output, opt='options/test_moeisr_demo.yml', model_path=None, image='motorcycle',
                     scale=4, biases=(0.0, 0.5, 1.0), data_root='datasets/demo/val'):
    """MoEISR's SR output beside its expert maps (decoder per output pixel) at each routing bias."""
    import moesr_arch  # noqa: F401

    from moesr_arch.inference import Upscaler, build_from_options
    network, _, _ = build_from_options(opt, model_path)
    lr = cv2.imread(str(Path(data_root) / 'LR_bicubic' / f'X{scale}' / f'{image}.png'))
    if lr is None:
        raise FileNotFoundError(f'{data_root}: no LR_bicubic/X{scale}/{image}.png (run make demo-data)')
    panels = []
    for bias in biases:
        network.routing_bias = float(bias)
        upscaler = Upscaler(network, scale, 'cpu', tile=0, out_scale=scale, want_maps=True, progress=False)
        sr, maps = upscaler.upscale_array(lr, 255.)
        if not panels:
            panels.append(caption(sr, f'MoEISR x{scale}'))
        panels.append(caption(np.ascontiguousarray(maps['experts'][..., ::-1]), f'experts, routing bias {bias:g}'))
    height = max(panel.shape[0] for panel in panels)
    panels = [np.vstack([p, np.full((height - p.shape[0], p.shape[1], 3), 255, np.uint8)]) for p in panels]
    gap = np.full((height, 6, 3), 255, np.uint8)
    figure = np.hstack([p for panel in panels for p in (panel, gap)][:-1])
    cv2.imwrite(str(output), figure, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('-opt', default='options/test_edsr_demo.yml', help='test option file of the network')
    parser.add_argument('--model_path', help='weights instead of path.pretrain_network_g')
    parser.add_argument('--image', default='motorcycle', help='demo validation image (default: motorcycle)')
    parser.add_argument('--crop', type=int, nargs=3, default=(100, 100, 120), metavar=('Y', 'X', 'SIZE'),
                        help='HR crop (default: 100 100 120)')
    parser.add_argument('-o', '--output', default='docs/images/before_after.png')
    parser.add_argument('--overlays', default='docs/images/gate_overlays.png', help='label gate overlay picture')
    parser.add_argument('--gate', default='experiments/gate_demo/gate.pt',
                        help='trained YOLO gate for the second overlay picture (skipped when missing)')
    parser.add_argument('--yolo_overlays', default='docs/images/yolo_gate_overlays.png',
                        help='YOLO gate overlay picture')
    parser.add_argument('--moeisr_opt', default='options/test_moeisr_demo.yml',
                        help='MoEISR test option file for the expert-map picture (skipped without its weights)')
    parser.add_argument('--expert_maps', default='docs/images/moeisr_expert_maps.png', help='expert-map picture')
    args = parser.parse_args(argv)
    print(make_gate_overlays(args.overlays))
    try:
        print(make_expert_maps(args.expert_maps, args.moeisr_opt))
    except FileNotFoundError as error:
        print(f'expert maps skipped: {error}')
    if Path(args.gate).is_file():
        print(make_gate_overlays(args.yolo_overlays, args.gate))
    print(make_before_after(args.opt, args.model_path, args.image, args.crop, args.output))


if __name__ == '__main__':
    main()
