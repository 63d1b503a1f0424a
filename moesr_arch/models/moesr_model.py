import os.path as osp
import time
from collections import OrderedDict
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from tqdm import tqdm

from moesr_arch.models.expert_sr_model import ExpertSRModel, log_routing_statistics
from moesr_arch.options import Checker, OptionError, check, checking_paths, section
from moesr_arch.utils.region_metrics import masked_psnr, masked_ssim

STAGES = ('generalist', 'experts', 'joint')
BACKGROUND = 'background'


def check_gate(value, where, source):
    from moesr_arch.gating import validate_gate_options
    validate_gate_options(value, where, source)


def check_stages(value, where, source):
    if not isinstance(value, list) or not value:
        raise OptionError(f'{source}: {where} must be a list of {{stage, iters}}, got {value!r}')
    for index, entry in enumerate(value):
        check(entry, STAGE_ENTRY, f'{where}[{index}]', source)


STAGE_ENTRY = section({'stage': Literal[STAGES], 'iters': int}, required=('stage', 'iters'))


@MODEL_REGISTRY.register()
class MoESRModel(ExpertSRModel):
    """MoE-SR training and testing: a gate, per-category experts and a background expert (``MoESRNet``).

    Training stages (``train.stage`` for the whole run, or ``train.stages: [{stage, iters}, ...]`` switched
    by iteration within one run, their iters adding up to ``total_iter``):

    - ``generalist``: the background expert alone on all data (L1 and any extra loss on its output);
    - ``experts``: each category expert on the pixels of its category (loss weighted by the category
      mask from the dataset's ``category_map``); at the first iteration of the first experts stage, every
      category expert of the same architecture is initialised from the background expert (the
      generalist), unless ``train.init_experts: false``;
    - ``joint``: the blended output with the label gate (teacher forcing) against the GT, all experts.

    Only the experts a stage trains receive gradients (Adam skips parameters without one), so one
    optimizer and one schedule serve the whole run.

    Validation and test run the top-level ``gate`` (default: a LabelGate on the network's categories)
    and the network (sparse at inference when ``network_g.sparse``), and report, besides
    ``val.metrics`` on the blend: the same metrics for the background expert alone on the same images
    (``<metric>_background``, the mixture's gain), and PSNR/SSIM inside each category's labelled regions
    (``psnr_<category>``, ``psnr_<category>_background``), when the dataset gives a ``category_map``.
    A table of these goes to the log, every value to TensorBoard; ``save_img`` also writes the
    background-only image and the gate overlay beside each blended image.
    """

    TOP_OPTIONS = {'gate': Checker(check_gate)}
    TRAIN_OPTIONS = {
        **ExpertSRModel.TRAIN_OPTIONS,
        'stage': Literal[STAGES],
        'stages': Checker(check_stages),
        'init_experts': bool,
    }
    VAL_OPTIONS = {'region_metrics': bool, 'save_overlay': bool, 'save_background': bool}

    @staticmethod
    def validate_options(opt, source, is_train):
        if opt['network_g'].get('type') != 'MoESRNet':
            raise OptionError(f'{source}: network_g.type must be MoESRNet for MoESRModel, got '
                              f'{opt["network_g"].get("type")!r}')
        if opt.get('val', {}).get('self_ensemble'):
            raise OptionError(f'{source}: val.self_ensemble is not supported by MoESRModel (the gate would see '
                              'flipped images); set it to false')
        gate = opt.get('gate')
        if gate and checking_paths():  # the categories files are read only where they exist
            from moesr_arch.archs.moesr_arch import resolve_categories
            from moesr_arch.data.categories import load_categories
            net = opt['network_g']
            expected = resolve_categories(net['experts'], list(net.get('categories') or ()),
                                          net.get('categories_file') or '')
            found = load_categories(gate['categories_file']) if 'categories_file' in gate else list(gate['categories'])
            if found != expected:
                raise OptionError(f'{source}: gate categories {found} differ from the network experts {expected} '
                                  '(same names in the same id order are needed)')
        if not is_train:
            return
        train = opt['train']
        if ('stage' in train) == ('stages' in train):
            raise OptionError(f'{source}: give exactly one of train.stage ({", ".join(STAGES)}) and train.stages '
                              '(a list of {stage, iters})')
        if 'stages' in train:
            total = sum(entry['iters'] for entry in train['stages'])
            if total != train['total_iter']:
                raise OptionError(f'{source}: train.stages add up to {total} iterations but train.total_iter is '
                                  f'{train["total_iter"]}')

    @staticmethod
    def unused_parameters(opt):
        train = opt.get('train') or {}
        stages = [entry['stage'] for entry in train.get('stages') or ()] or [train.get('stage')]
        partial = sorted({stage for stage in stages if stage in ('generalist', 'experts')})
        if partial:
            return f'the {" and ".join(partial)} stage{"s" if len(partial) > 1 else ""} train only some experts'
        return None

    def __init__(self, opt):
        super().__init__(opt)
        from moesr_arch.gating import build_gate
        net = self.bare_net
        gate_opt = opt.get('gate') or {'type': 'LabelGate', 'categories': net.categories}
        self.gate = build_gate(dict(gate_opt), source='gate')
        if list(self.gate.categories) != list(net.categories):
            raise ValueError(f'gate categories {self.gate.categories} differ from the network experts '
                             f'{net.categories} (same names in the same id order are needed)')
        if self.is_train:
            self.train_gate = build_gate({'type': 'LabelGate', 'categories': net.categories}, source='train')
            self.schedule = stage_schedule(opt['train'])

    @property
    def bare_net(self):
        return self.get_bare_model(self.net_g)

    # ------------------------------------------------------------------------------------------
    # Training

    def feed_data(self, data):
        self.data = data
        super().feed_data(data)
        self.category_map = data['category_map'].to(self.device) if 'category_map' in data else None

    def stage_at(self, current_iter):
        """(stage name, first iteration of that stage entry) for a 1-based iteration."""
        for stage, first, last in self.schedule:
            if first <= current_iter <= last:
                return stage, first
        return self.schedule[-1][0], self.schedule[-1][1]

    def training_losses(self, current_iter):
        stage, first = self.stage_at(current_iter)
        if current_iter == first:
            self.start_stage(stage, current_iter)
        if stage == 'experts':
            return self.expert_losses()
        if stage == 'generalist':
            self.output = self.net_g(self.lq, expert=BACKGROUND)
        else:
            self.output = self.net_g(self.lq, self.train_gate(self.lq, self.data))
        return self.compute_losses()

    def expert_losses(self):
        """Each category expert's loss on its own pixels (mask-weighted), for the categories in the batch."""
        if self.category_map is None:
            raise ValueError('the experts stage needs a category_map from the dataset (use '
                             'CategoryPairedImageDataset with category labels)')
        losses = OrderedDict()
        names = self.bare_net.categories
        # One forward pass for all category experts (DDP allows one per backward); every rank then has
        # the same loss terms, so the loss reduction and the gradient all-reduce stay in step.
        outputs = self.net_g(self.lq, expert=list(names))
        for index, (name, output) in enumerate(zip(names, outputs)):
            mask = (self.category_map == index).float()[:, None]
            if mask.any():  # pixels of other categories and of the background have weight 0
                mask = F.interpolate(mask, scale_factor=self.bare_net.scale, mode='nearest')
                losses[f'l_pix_{name}'] = self.cri_pix(output, self.gt, weight=mask)
            else:  # the category is not in this batch: a zero loss that still touches the expert
                losses[f'l_pix_{name}'] = output.sum() * 0
        return losses

    def start_stage(self, stage, current_iter):
        logger = get_root_logger()
        logger.info(f'Stage {stage} starts at iteration {current_iter}')
        first_experts = next(first for name, first, _ in self.schedule if name == 'experts') \
            if any(name == 'experts' for name, _, _ in self.schedule) else None
        if stage == 'experts' and current_iter == first_experts and self.opt['train'].get('init_experts', True):
            copied = self.init_experts_from_background()
            logger.info(f'Category experts initialised from the background expert: {", ".join(copied) or "none"}')

    def init_experts_from_background(self):
        """Copy the background expert's weights into every category expert of the same architecture."""
        nets = [self.bare_net] + ([self.net_g_ema] if hasattr(self, 'net_g_ema') else [])
        copied = []
        for net in nets:
            source = net.experts[BACKGROUND].state_dict()
            for name in net.categories:
                target = net.experts[name]
                shapes = {k: v.shape for k, v in target.state_dict().items()}
                if type(target) is type(net.experts[BACKGROUND]) and shapes == {k: v.shape for k, v in source.items()}:
                    target.load_state_dict(source)
                    if net is self.bare_net:
                        copied.append(name)
                elif net is self.bare_net:
                    get_root_logger().warning(f'Expert {name} ({type(target).__name__}) differs from the background '
                                              f'expert ({type(net.experts[BACKGROUND]).__name__}): not initialised')
        return copied

    # ------------------------------------------------------------------------------------------
    # Inference and validation

    def test(self):
        net = self.get_bare_model(self.test_network())
        was_training = net.training
        net.eval()
        # Sparse experts see crops of ever new shapes: cuDNN's autotuner (BasicSR turns it on) would
        # re-tune for each of them, costing more than it saves.
        benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
        try:
            with torch.no_grad():
                start = synchronized_clock(self.device)
                self.gate_weights = self.gate(self.lq, self.data)
                gated = synchronized_clock(self.device)
                result = net.run(self.lq, self.gate_weights)
                self.timing = (gated - start, synchronized_clock(self.device) - gated)
        finally:
            torch.backends.cudnn.benchmark = benchmark
        net.train(was_training)
        self.output, self.background_output = result['output'], result['background']

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        val_opt = self.opt['val']
        metrics = val_opt.get('metrics') or {}
        region_opts = {kind: opt_ for kind, opt_ in
                       ((kind, next((o for o in metrics.values() if o['type'] == f'calculate_{kind}'), None))
                        for kind in ('psnr', 'ssim')) if opt_ is not None}
        net = self.get_bare_model(self.test_network())
        net.reset_routing_statistics()
        sums, counts, shares, times = OrderedDict(), OrderedDict(), OrderedDict(), np.zeros(2)

        def add(key, value):
            if not np.isnan(value):
                sums[key] = sums.get(key, 0.) + value
                counts[key] = counts.get(key, 0) + 1

        pbar = tqdm(total=len(dataloader), unit='image') if val_opt.get('pbar', False) else None
        for val_data in dataloader:
            img_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            times += self.timing
            sr_img, bg_img = tensor2img([self.output.cpu()]), tensor2img([self.background_output.cpu()])
            if 'gt' in val_data:
                gt_img = tensor2img([self.gt.cpu()])
                for name, opt_ in metrics.items():
                    add(name, calculate_metric({'img': sr_img, 'img2': gt_img}, opt_))
                    add(f'{name}_background', calculate_metric({'img': bg_img, 'img2': gt_img}, opt_))
                if self.category_map is not None and val_opt.get('region_metrics', True):
                    self._region_metrics(sr_img, bg_img, gt_img, region_opts, add, shares)
            if save_img:
                self._save_images(img_name, dataset_name, current_iter, sr_img, bg_img)
            if pbar:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
            del self.lq, self.output, self.background_output
            if hasattr(self, 'gt'):
                del self.gt
        if pbar:
            pbar.close()
        self.metric_results = OrderedDict((key, sums[key] / counts[key]) for key in sums)
        self.region_image_counts = counts
        for key, value in self.metric_results.items():
            self._update_best(dataset_name, key, value, current_iter, metrics)
        self.log_table(dataset_name, current_iter, shares, times / max(len(dataloader), 1), region_opts)
        if self.metric_results:
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        log_routing_statistics(net.routing_statistics(), dataset_name, current_iter, tb_logger)

    def _region_metrics(self, sr_img, bg_img, gt_img, region_opts, add, shares):
        scale = self.bare_net.scale
        category_map = self.category_map[0].cpu().numpy()
        category_map = np.kron(category_map, np.ones((scale, scale), dtype=category_map.dtype))
        for index, name in enumerate(self.bare_net.categories):
            mask = category_map == index
            if not mask.any():
                continue
            shares.setdefault(name, []).append(float(mask.mean()))
            for kind, opt_ in region_opts.items():
                function = masked_psnr if kind == 'psnr' else masked_ssim
                kwargs = dict(crop_border=opt_.get('crop_border', 0), test_y_channel=opt_.get('test_y_channel', False))
                add(f'{kind}_{name}', function(sr_img, gt_img, mask, **kwargs))
                add(f'{kind}_{name}_background', function(bg_img, gt_img, mask, **kwargs))

    def _save_images(self, img_name, dataset_name, current_iter, sr_img, bg_img):
        from moesr_arch.gating.overlay import draw_overlay
        if self.opt['is_train']:
            stem = osp.join(self.opt['path']['visualization'], img_name, f'{img_name}_{current_iter}')
        else:
            suffix = self.opt['val'].get('suffix') or self.opt['name']
            stem = osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_{suffix}')
        imwrite(sr_img, f'{stem}.png')
        if self.opt['val'].get('save_background', True):
            imwrite(bg_img, f'{stem}_background.png')
        if self.opt['val'].get('save_overlay', True):
            lq = (self.lq[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            overlay = draw_overlay(lq, self.gate_weights[0], self.bare_net.categories)
            imwrite(np.ascontiguousarray(overlay[..., ::-1]), f'{stem}_gate.png')

    def _update_best(self, dataset_name, key, value, current_iter, metrics):
        if not hasattr(self, 'best_metric_results'):
            self.best_metric_results = {}
        record = self.best_metric_results.setdefault(dataset_name, {})
        if key not in record:
            base = next((m for m in metrics if key == m or key.startswith(f'{m}_')), None)
            better = metrics[base].get('better', 'higher') if base else 'higher'
            record[key] = dict(better=better, val=float('-inf') if better == 'higher' else float('inf'), iter=-1)
        self._update_best_metric_result(dataset_name, key, value, current_iter)

    def log_table(self, dataset_name, current_iter, shares, times, region_opts):
        """The MoE-SR table: blend vs background expert alone, on the whole images and inside each category."""
        results = self.metric_results
        kinds = [kind for kind in ('psnr', 'ssim') if kind in results]
        if not kinds:
            return
        described = ', '.join(f'{kind.upper()}' + (' Y' if region_opts.get(kind, {}).get('test_y_channel') else '') +
                              f' crop {region_opts.get(kind, {}).get("crop_border", 0)}' for kind in kinds)
        lines = [f'MoE-SR on {dataset_name} at {current_iter} ({described}; regions = labelled pixels; '
                 f'gate {times[0] * 1000:.0f} ms + experts and blend {times[1] * 1000:.0f} ms per image):',
                 f'\t{"region":<12}{"images":>7}{"area":>7}   ' + ''.join(
                     f'{kind.upper() + " MoE-SR":>13}{"background":>12}{"gain":>9}' for kind in kinds)]
        rows = [('all', '', None)] + [(name, f'_{name}', shares.get(name)) for name in self.bare_net.categories]
        for label, suffix, share in rows:
            if f'{kinds[0]}{suffix}' not in results:
                continue
            count = self.region_image_counts.get(f'{kinds[0]}{suffix}', 0)
            area = '100%' if share is None else f'{100 * np.mean(share):.0f}%'
            cells = ''
            for kind in kinds:
                mix, alone = results.get(f'{kind}{suffix}'), results.get(f'{kind}{suffix}_background')
                digits = 2 if kind == 'psnr' else 4
                cells += f'{mix:>13.{digits}f}{alone:>12.{digits}f}{mix - alone:>+9.{digits}f}'
            lines.append(f'\t{label:<12}{count:>7}{area:>7}   {cells}')
        get_root_logger().info('\n'.join(lines))


def synchronized_clock(device):
    """``time.perf_counter()`` once the work queued on ``device`` is done (CUDA runs asynchronously)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter()


def stage_schedule(train_opt):
    """``[(stage, first_iter, last_iter), ...]`` (1-based, inclusive) from ``train.stage`` or ``train.stages``."""
    if 'stages' not in train_opt:
        return [(train_opt['stage'], 1, int(train_opt['total_iter']))]
    schedule, first = [], 1
    for entry in train_opt['stages']:
        schedule.append((entry['stage'], first, first + entry['iters'] - 1))
        first += entry['iters']
    return schedule
