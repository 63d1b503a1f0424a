"""One evaluation pass of MoE-SR over a test set (validation during training and ``basicsr test``).

For every image: the blend, the background expert alone on the whole image (top-1 sparse inference runs it
only where it has weight, so it is run again here, outside the timing), the equal-budget control and bicubic,
scored with ``val.metrics`` on the whole image and, where the set has category maps, inside each category's
labelled pixels (``val.region_metrics``); every expert alone inside every region (``val.specialisation``);
and with ``save_img`` the pictures (blend, background alone, gate overlay). The pass ends with the comparison
table, the metric lines with their best values, the specialisation matrix and heat map, and the routing shares.
"""
import os.path as osp
from collections import OrderedDict

import numpy as np
import torch
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, tensor2img
from tqdm import tqdm

from moesr_arch.archs.routing import add_expert_pixels, routing_shares
from moesr_arch.evaluation.comparison import MetricSums, bicubic_upscale, comparison_table
from moesr_arch.evaluation.regions import BACKGROUND, masked_psnr, masked_ssim, region_masks
from moesr_arch.evaluation.report import log_metrics, log_routing_statistics, update_best
from moesr_arch.evaluation.specialisation import SpecialisationMatrix
from moesr_arch.inference.device import synchronized_clock
from moesr_arch.inference.maps import gate_overlay
from moesr_arch.utils.atomic import atomic_write_text
from moesr_arch.utils.image_io import write_png
from moesr_arch.utils.modes import eval_mode

REGION_METRICS = {'psnr': masked_psnr, 'ssim': masked_ssim}


def expert_alone(net, name, lq):
    """One expert of a ``MoESRNet`` on the whole LR image, in eval mode and without gradients."""
    with eval_mode(net.experts[name]), torch.no_grad():
        return net.experts[name](lq)


def evaluate(model, dataloader, current_iter, tb_logger, save_img):
    """Run ``model`` (a MoESRModel) over ``dataloader``; returns ``{metric key: mean}`` (see the module)."""
    opt, val_opt = model.opt, model.opt['val']
    dataset_name = dataloader.dataset.opt['name']
    metrics = val_opt.get('metrics') or {}
    # The region metrics follow the options of the first whole-image metric of the same function.
    region_opts = OrderedDict((kind, found) for kind in REGION_METRICS if (found := next(
        (options for options in metrics.values() if options['type'] == f'calculate_{kind}'), None)) is not None)
    net = model.tested_network()
    matrix = None
    if val_opt['specialisation'] and 'psnr' in region_opts:
        matrix = SpecialisationMatrix(net.names, net.categories + [BACKGROUND])
    sums, routed, times = MetricSums(), OrderedDict(), np.zeros(3)
    for data in (bar := tqdm(dataloader, unit='image', disable=not val_opt.get('pbar'))):
        bar.set_description(f"Test {osp.splitext(osp.basename(data['lq_path'][0]))[0]}")  # BasicSR's bar says so
        model.feed_data(data)
        result = model.test()
        start = synchronized_clock(model.device)
        control = model.control_output()
        times += (*result.timing, synchronized_clock(model.device) - start)
        add_expert_pixels(routed, result.expert_pixels)
        with model.speedups.validation_autocast(model.device):
            background = result.background if result.background is not None else expert_alone(net, BACKGROUND, model.lq)
        images = OrderedDict([('', tensor2img([result.output.cpu()])), ('_background', tensor2img([background.cpu()]))])
        if control is not None:
            images['_reference'] = tensor2img([control.cpu()])
        images['_bicubic'] = tensor2img([bicubic_upscale(model.lq[0].cpu(), net.scale, result.output.shape[-2:])])
        if 'gt' in data:
            gt = tensor2img([model.gt.cpu()])
            for name, metric_opt in metrics.items():
                for suffix, img in images.items():
                    sums.add(f'{name}{suffix}', calculate_metric({'img': img, 'img2': gt}, metric_opt))
            masks = {}
            if model.category_map is not None:
                masks = region_masks(model.category_map[0].cpu().numpy(), net.categories, net.scale)
            if masks and val_opt['region_metrics']:
                score_regions(sums, images, gt, masks, region_opts)
            if masks and matrix is not None:
                with model.speedups.validation_autocast(model.device):
                    score_experts(matrix, net, model.lq, images, gt, masks, region_opts['psnr'])
        if save_img:
            save_pictures(opt, data, dataset_name, current_iter, images, model.lq[0], result.gate_weights[0],
                          net.categories)
        del result, control, background, images  # before the next image's outputs exist
    model.release_batch()
    results = sums.means()
    if not hasattr(model, 'best_metric_results'):
        model.best_metric_results = {}
    update_best(model.best_metric_results, dataset_name, results, current_iter, metrics)
    table = comparison_table(sums, net.categories, dataset_name, current_iter, region_opts,
                             times / max(len(dataloader), 1))
    if table is not None:
        get_root_logger().info(table)
        if opt['rank'] == 0:
            atomic_write_text(osp.join(opt['path']['log'], f'comparison_{dataset_name}.txt'), table + '\n')
    if results:
        log_metrics(results, model.best_metric_results, dataset_name, current_iter, tb_logger)
    if matrix is not None and matrix.counts.any():
        report_specialisation(matrix, opt, dataset_name, current_iter, tb_logger)
    log_routing_statistics(routing_shares(routed), dataset_name, current_iter, tb_logger)
    return results


def score_regions(sums, images, gt, masks, region_opts):
    """PSNR / SSIM of each compared image inside each category's labelled pixels."""
    for name, mask in masks.items():
        if name == BACKGROUND:
            continue
        sums.add_area(name, float(mask.mean()))
        for kind, options in region_opts.items():
            for suffix, img in images.items():
                sums.add(f'{kind}_{name}{suffix}', REGION_METRICS[kind](
                    img, gt, mask, crop_border=options['crop_border'],
                    test_y_channel=options.get('test_y_channel', False)))


def score_experts(matrix, net, lq, images, gt, masks, psnr_opt):
    """Every expert alone on this image, scored inside every region, with the blend and its baselines."""
    outputs = OrderedDict((name, images['_background'] if name == BACKGROUND else
                           tensor2img([expert_alone(net, name, lq).cpu()])) for name in net.names)
    outputs['MoE-SR'] = images['']
    if '_reference' in images:
        outputs['single network'] = images['_reference']
    outputs['bicubic'] = images['_bicubic']
    for row, img in outputs.items():
        for region, mask in masks.items():
            matrix.add(row, region, masked_psnr(img, gt, mask, crop_border=psnr_opt['crop_border'],
                                                test_y_channel=psnr_opt.get('test_y_channel', False)))


def report_specialisation(matrix, opt, dataset_name, current_iter, tb_logger):
    get_root_logger().info(f'Specialisation on {dataset_name} at {current_iter} (PSNR of each expert alone inside '
                           'each region; rows: experts, columns: regions):\n' + matrix.table())
    if tb_logger:
        for (row, region), value in matrix.means().items():
            tb_logger.add_scalar(f'specialisation/{dataset_name}/{row}/{region}', value, current_iter)
    if opt['rank'] == 0:
        path = osp.join(opt['path']['visualization'], f'specialisation_{dataset_name}_{current_iter}.png')
        matrix.save_heatmap(path, title=f'{dataset_name}, iteration {current_iter}: PSNR-Y inside each region')


def save_pictures(opt, data, dataset_name, current_iter, images, lq, gate_weights, categories):
    """The blend, with ``val.save_background`` the background expert alone and with ``val.save_overlay`` the gate
    overlay, where BasicSR's ``SRModel`` saves its pictures."""
    img_name = osp.splitext(osp.basename(data['lq_path'][0]))[0]
    if opt['is_train']:
        stem = osp.join(opt['path']['visualization'], img_name, f'{img_name}_{current_iter}')
    else:
        suffix = opt['val'].get('suffix') or opt['name']
        stem = osp.join(opt['path']['visualization'], dataset_name, f'{img_name}_{suffix}')
    write_png(f'{stem}.png', images[''])
    if opt['val']['save_background']:
        write_png(f'{stem}_background.png', images['_background'])
    if opt['val']['save_overlay']:
        overlay = gate_overlay(lq, gate_weights, categories)
        write_png(f'{stem}_gate.png', np.ascontiguousarray(overlay[..., ::-1]))
