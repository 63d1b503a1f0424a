"""One evaluation pass of MoEISR over a test set, decoded at the set's own ``scale``.

Besides ``val.metrics`` (logged per set, so per scale), every image's decoder FLOPs are logged beside those of the
deepest decoder alone (the LIIF baseline), with each decoder's share of the pixels; with ``save_img`` the SR
image is saved where BasicSR's ``SRModel`` saves it (during training in a folder per set: several scales of one
image would otherwise share a name) and, unless ``val.expert_maps`` is false, an expert map beside it.
"""
import os.path as osp
from collections import OrderedDict

import numpy as np
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, tensor2img
from tqdm import tqdm

from moesr_arch.archs.moeisr_arch import describe_flops
from moesr_arch.evaluation.comparison import MetricSums
from moesr_arch.evaluation.report import log_metrics, log_routing_statistics, update_best
from moesr_arch.inference.maps import depth_names, expert_map_picture
from moesr_arch.utils.image_io import write_png


def evaluate(model, dataloader, current_iter, tb_logger, save_img):
    """Run ``model`` (a MoEISRModel) over ``dataloader`` at its set's scale; returns ``{metric: mean}``."""
    opt, dataset_opt = model.opt, dataloader.dataset.opt
    dataset_name, scale = dataset_opt['name'], dataset_opt['scale']
    metrics = opt['val'].get('metrics') or {}
    net = model.get_bare_model(model.test_network())
    sums, pixels, flops, flops_deepest = MetricSums(), OrderedDict(), 0, 0
    for data in (bar := tqdm(dataloader, unit='image', disable=not opt['val'].get('pbar'))):
        img_name = osp.splitext(osp.basename(data['lq_path'][0]))[0]
        bar.set_description(f'Test {img_name}')  # as BasicSR's bar
        model.feed_data(data)
        stats = model.test(scale)
        sr = tensor2img([model.output.detach().cpu()])
        if 'gt' in data:
            gt = tensor2img([model.gt.detach().cpu()])
            for name, metric_opt in metrics.items():
                sums.add(name, calculate_metric({'img': sr, 'img2': gt}, metric_opt))
        stem = picture_stem(opt, dataset_name, img_name, current_iter)
        if save_img:
            write_png(f'{stem}.png', sr)
        if stats is None:  # self-ensemble: eight decodings, no one routing to report
            continue
        for name, count in stats['expert_pixels'].items():
            pixels[name] = pixels.get(name, 0.) + count
        flops, flops_deepest = flops + stats['flops'], flops_deepest + stats['flops_deepest']
        log_image(dataset_name, img_name, scale, stats, net.expert_depths)
        if save_img and opt['val']['expert_maps']:
            picture = expert_map_picture(stats['expert_map'][0].cpu().numpy(), depth_names(net.expert_depths))
            write_png(f'{stem}_experts.png', np.ascontiguousarray(picture[:, :, ::-1]))
    model.release_batch()
    results = sums.means()
    if not hasattr(model, 'best_metric_results'):
        model.best_metric_results = {}
    update_best(model.best_metric_results, dataset_name, results, current_iter, metrics)
    if results:
        log_metrics(results, model.best_metric_results, dataset_name, current_iter, tb_logger)
    log_routing_statistics(decoder_shares(pixels, flops, flops_deepest), dataset_name, current_iter, tb_logger)
    return results


def picture_stem(opt, dataset_name, img_name, current_iter):
    """Where an image's pictures go, without ``.png`` (BasicSR's places; during training one folder per set)."""
    folder = osp.join(opt['path']['visualization'], dataset_name)
    if opt['is_train']:
        return osp.join(folder, img_name, f'{img_name}_{current_iter}')
    return osp.join(folder, f"{img_name}_{opt['val'].get('suffix') or opt['name']}")


def log_image(dataset_name, img_name, scale, stats, expert_depths):
    total = sum(stats['expert_pixels'].values())
    shares = [count / max(total, 1) for count in stats['expert_pixels'].values()]
    saving = 1 - stats['flops'] / stats['flops_deepest']
    height, width = stats['expert_map'].shape[-2:]
    get_root_logger().info(
        f"{dataset_name} {img_name} x{scale:g} ({width}x{height}): decoder {describe_flops(stats['flops'])}FLOPs vs "
        f"{describe_flops(stats['flops_deepest'])}FLOPs with the deepest decoder alone ({saving:.1%} fewer); pixels "
        'per expert (hidden layers): ' + ', '.join(f'{d}: {s:.1%}' for d, s in zip(expert_depths, shares)))


def decoder_shares(pixels, flops, flops_deepest):
    """Each expert's share of the validation pixels and the decoder FLOPs relative to the deepest decoder alone."""
    total = sum(pixels.values())
    if not total:
        return {}
    shares = OrderedDict((name, count / total) for name, count in pixels.items())
    shares['decoder_flops_vs_deepest'] = flops / max(flops_deepest, 1)
    return shares
