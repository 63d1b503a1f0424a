import os.path as osp
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from tqdm import tqdm

from moesr_arch.archs.routing import add_expert_pixels, routing_shares
from moesr_arch.inference.device import synchronized_clock
from moesr_arch.inference.gated import run_gated
from moesr_arch.inference.maps import gate_overlay
from moesr_arch.models.single_network_sr_model import SingleNetworkSRModel, log_routing_statistics
from moesr_arch.utils.atomic import atomic_write_text
from moesr_arch.utils.image_io import write_png
from moesr_arch.utils.region_metrics import masked_psnr, masked_ssim
from moesr_arch.utils.specialisation import SpecialisationMatrix, bicubic_upscale

SHORT_NAMES = {'psnr': 'PSNR', 'ssim': 'SSIM', 'color_bias': 'BIAS'}  # table headers
BACKGROUND = 'background'


@MODEL_REGISTRY.register()
class MoESRModel(SingleNetworkSRModel):
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
    (``<metric>_background``, the mixture's gain; run on the whole image for the report, since top-1
    sparse inference runs it only where it has weight, and left out of the timing), and PSNR/SSIM inside
    each category's labelled regions (``psnr_<category>``, ``psnr_<category>_background``), when the
    dataset gives a ``category_map``. A table of these goes to the log, every value to TensorBoard;
    ``save_img`` also writes the background-only image and the gate overlay beside each blended image.

    **The equal-budget control** (``network_ref``, e.g. the background expert's options): a single network
    trained beside the mixture on the very same batches, for the same iterations, with the same optimizer,
    schedule and EMA, on the plain loss over all pixels. Validation and test report it (``<metric>_reference``)
    and bicubic (``<metric>_bicubic``) beside the blend, overall and inside each category, so the mixture's
    gain is read against a fair baseline; the table is also written to
    ``<log folder>/comparison_<dataset>.txt``. Its weights are ``net_ref_<iter>.pth`` (``path.
    pretrain_network_ref`` at test).

    **The specialisation matrix** (``val.specialisation``, default on): every expert run alone on every
    image, scored (PSNR, Y when the metric says so) inside each category's regions and on the unlabelled
    background; logged, written to TensorBoard (``specialisation/<dataset>/<expert>/<region>``) and drawn
    as a heat map (``<visualization>/specialisation_<dataset>_<iter>.png``). The experts specialise when
    each column's best value sits in its own expert's row.

    In the ``experts`` stage a category absent from the batch (on every rank) keeps its weights: its
    gradients are dropped, so Adam's momentum does not move it. With ``train.background_in_experts``
    the background expert learns in that stage too, on the unlabelled pixels. ``train.other_pixels_weight``
    (default 0) weighs the pixels outside an expert's own category in its loss: 0 trains each expert on
    its pixels alone, 1 on the whole crop like the single network.
    """

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
        elif 'network_ref' in opt:
            self.net_ref = self.build_reference(opt['path'].get('param_key_ref', 'params_ema'))
        self.absent_experts = []

    # ------------------------------------------------------------------------------------------
    # The equal-budget control

    def build_reference(self, param_key):
        net = self.model_to_device(build_network(self.opt['network_ref']))
        path = self.opt['path'].get('pretrain_network_ref')
        if path is not None:
            self.load_network(net, path, self.opt['path'].get('strict_load_ref', True), param_key)
        elif not self.is_train:
            raise ValueError('network_ref is given but path.pretrain_network_ref is not: the control has no weights')
        return net

    def init_training_settings(self):
        path_opt = self.opt['path']
        if path_opt.get('pretrain_network_experts') and not path_opt.get('pretrain_network_g'):
            from moesr_arch.options.training import MoESRPathSection
            default_key = MoESRPathSection.model_fields['param_key_experts'].default
            self.load_experts(path_opt['pretrain_network_experts'], path_opt.get('param_key_experts', default_key))
        self.net_ref = self.build_reference('params') if 'network_ref' in self.opt else None
        super().init_training_settings()
        if self.net_ref is not None:
            self.net_ref.train()
            if self.ema_decay > 0:
                self.net_ref_ema = build_network(self.opt['network_ref']).to(self.device).eval()
                path = self.opt['path'].get('pretrain_network_ref')
                if path is not None:
                    # As net_g's EMA copy: the file's params_ema, else the weights net_ref started from.
                    self.load_network(self.net_ref_ema, path, self.opt['path'].get('strict_load_ref', True),
                                      ['params_ema', 'params'])
                else:
                    self.net_ref_ema.load_state_dict(self.get_bare_model(self.net_ref).state_dict())

    def setup_optimizers(self):
        optim_opt = dict(self.opt['train']['optim_g'])  # BasicSR pops its type
        super().setup_optimizers()
        if self.net_ref is not None:
            optim_opt = dict(optim_opt)
            params = [p for p in self.net_ref.parameters() if p.requires_grad]
            self.optimizer_ref = self.get_optimizer(optim_opt.pop('type'), params, **optim_opt)
            self.optimizers.append(self.optimizer_ref)  # BasicSR gives it the same schedule

    def optimize_parameters(self, current_iter):
        super().optimize_parameters(current_iter)
        if self.net_ref is None:
            return
        self.optimizer_ref.zero_grad(set_to_none=True)
        with self.speedups.autocast(self.device):
            losses = self.compute_losses(self.net_ref(self.lq), prefix='l_ref_')
        self.step(self.net_ref, self.optimizer_ref, losses, current_iter)
        self.log_dict.update(self.reduce_loss_dict(losses))
        if self.ema_decay > 0:
            ema_update(self.net_ref_ema, self.get_bare_model(self.net_ref), self.ema_decay)

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        if getattr(self, 'net_ref', None) is not None:
            nets, keys = [self.net_ref], ['params']
            if hasattr(self, 'net_ref_ema'):
                nets, keys = nets + [self.net_ref_ema], keys + ['params_ema']
            self.save_network(nets, 'net_ref', current_iter, param_key=keys)

    def reference_network(self):
        return getattr(self, 'net_ref_ema', None) or getattr(self, 'net_ref', None)

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
        names = list(self.bare_net.categories)
        if self.opt['train'].get('background_in_experts', False):
            names.append(BACKGROUND)  # its pixels: the map's value K, after the K categories
        # One forward pass for all trained experts (DDP allows one per backward); every rank then has
        # the same loss terms, so the loss reduction and the gradient all-reduce stay in step.
        outputs = self.net_g(self.lq, expert=names)
        present = torch.stack([(self.category_map == index).any() for index in range(len(names))]).float()
        if self.opt['dist']:
            torch.distributed.all_reduce(present, op=torch.distributed.ReduceOp.MAX)
        self.absent_experts = [name for name, here in zip(names, present.tolist()) if not here]
        others = float(self.opt['train'].get('other_pixels_weight', 0.0))
        for index, (name, output) in enumerate(zip(names, outputs)):
            mask = (self.category_map == index).float()[:, None]
            if mask.any():  # pixels of other categories (and of the background) weigh other_pixels_weight
                weight = F.interpolate(mask, scale_factor=self.bare_net.scale, mode='nearest')
                losses[f'l_pix_{name}'] = self.cri_pix(output, self.gt, weight=weight + others * (1 - weight))
            else:  # not in this rank's batch: a zero loss keeps the graph alike on every rank
                losses[f'l_pix_{name}'] = output.sum() * 0
        return losses

    def discard_gradients(self, net):
        """Experts whose category no rank's batch holds keep their weights (see the class docstring)."""
        if net is not self.net_g:
            return
        for name in self.absent_experts:
            for param in self.bare_net.experts[name].parameters():
                param.grad = None
        self.absent_experts = []

    def start_stage(self, stage, current_iter):
        logger = get_root_logger()
        logger.info(f'Stage {stage} starts at iteration {current_iter}')
        first_experts = next(first for name, first, _ in self.schedule if name == 'experts') \
            if any(name == 'experts' for name, _, _ in self.schedule) else None
        if stage == 'experts' and current_iter == first_experts and self.opt['train'].get('init_experts', True):
            copied = self.init_experts_from_background()
            logger.info(f'Category experts initialised from the background expert: {", ".join(copied) or "none"}')

    def load_experts(self, path, param_key):
        """Start every expert that ``path``'s weights fit (same keys and shapes) from them: the generalist of
        the MoE-SR reference. Runs before BasicSR copies net_g into its EMA, so the EMA starts there too."""
        from moesr_arch.utils.checkpoint import mismatch, read_weights
        state = read_weights(path, param_key, what='path.pretrain_network_experts').state
        loaded, skipped = [], []
        for name, expert in self.bare_net.experts.items():
            if mismatch(expert.state_dict(), state):
                skipped.append(f'{name} ({type(expert).__name__})')
            else:
                expert.load_state_dict(state)
                loaded.append(name)
        if not loaded:
            raise ValueError(f'path.pretrain_network_experts {path}: its weights fit none of the experts '
                             f'({", ".join(skipped)}); give the weights of one expert of network_g')
        logger = get_root_logger()
        logger.info(f'Experts {", ".join(loaded)} start from {path}')
        if skipped:
            logger.warning(f'path.pretrain_network_experts {path}: does not fit {", ".join(skipped)}, which start fresh')

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
            with torch.no_grad(), self.speedups.validation_autocast(self.device):
                # The same pipeline as basicsr infer (moesr_arch/inference/gated.py), with the batch for the gate.
                result = run_gated(net, self.gate, self.lq, self.data)
                blended = synchronized_clock(self.device)
                reference = self.reference_network()
                self.reference_output = None
                if reference is not None:
                    reference_was_training = reference.training
                    reference.eval()
                    self.reference_output = self.get_bare_model(reference)(self.lq)
                    reference.train(reference_was_training)
                self.timing = result.timing + (synchronized_clock(self.device) - blended, )
        finally:
            torch.backends.cudnn.benchmark = benchmark
        net.train(was_training)
        self.expert_pixels = result.expert_pixels
        self.output, self.background_output, self.gate_weights = result.output, result.background, result.gate_weights

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        val_opt = self.opt['val']
        metrics = val_opt.get('metrics') or {}
        region_opts = {kind: opt_ for kind, opt_ in
                       ((kind, next((o for o in metrics.values() if o['type'] == f'calculate_{kind}'), None))
                        for kind in ('psnr', 'ssim')) if opt_ is not None}
        net = self.get_bare_model(self.test_network())
        sums, counts, shares, times, routed = OrderedDict(), OrderedDict(), OrderedDict(), np.zeros(3), OrderedDict()
        matrix = None
        if val_opt.get('specialisation', True) and 'psnr' in region_opts:
            matrix = SpecialisationMatrix(net.names, net.categories + [BACKGROUND])

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
            add_expert_pixels(routed, self.expert_pixels)
            if self.background_output is None:  # top-1 sparse inference leaves the background's whole image out
                with self.speedups.validation_autocast(self.device):
                    self.background_output = expert_alone(net, BACKGROUND, self.lq)
            images = self._compared_images()
            if 'gt' in val_data:
                gt_img = tensor2img([self.gt.cpu()])
                for name, opt_ in metrics.items():
                    for suffix, img in images.items():
                        add(f'{name}{suffix}', calculate_metric({'img': img, 'img2': gt_img}, opt_))
                masks = self._region_masks() if self.category_map is not None else {}
                if masks and val_opt.get('region_metrics', True):
                    self._region_metrics(images, gt_img, masks, region_opts, add, shares)
                if masks and matrix is not None:
                    self._specialisation(matrix, net, gt_img, masks, images, region_opts['psnr'])
            if save_img:
                self._save_images(img_name, dataset_name, current_iter, images[''], images['_background'])
            if pbar:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
            del self.lq, self.output, self.background_output, self.reference_output
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
        if matrix is not None and matrix.counts.any():
            self._report_specialisation(matrix, dataset_name, current_iter, tb_logger)
        log_routing_statistics(routing_shares(routed), dataset_name, current_iter, tb_logger)

    def _compared_images(self):
        """HR images of the blend and of its baselines, by metric-key suffix ('' is MoE-SR)."""
        images = OrderedDict([('', tensor2img([self.output.cpu()])),
                              ('_background', tensor2img([self.background_output.cpu()]))])
        if self.reference_output is not None:
            images['_reference'] = tensor2img([self.reference_output.cpu()])
        bicubic = bicubic_upscale(self.lq[0].cpu(), self.bare_net.scale, self.output.shape[-2:])
        images['_bicubic'] = tensor2img([bicubic])
        return images

    def _region_masks(self):
        """HR masks of each category's labelled pixels and of the unlabelled rest (``background``)."""
        scale = self.bare_net.scale
        category_map = self.category_map[0].cpu().numpy()
        category_map = np.kron(category_map, np.ones((scale, scale), dtype=category_map.dtype))
        masks = OrderedDict((name, category_map == index) for index, name in enumerate(self.bare_net.categories))
        masks[BACKGROUND] = category_map == len(self.bare_net.categories)
        return OrderedDict((name, mask) for name, mask in masks.items() if mask.any())

    def _region_metrics(self, images, gt_img, masks, region_opts, add, shares):
        for name, mask in masks.items():
            if name == BACKGROUND:
                continue
            shares.setdefault(name, []).append(float(mask.mean()))
            for kind, opt_ in region_opts.items():
                function = masked_psnr if kind == 'psnr' else masked_ssim
                kwargs = dict(crop_border=opt_.get('crop_border', 0), test_y_channel=opt_.get('test_y_channel', False))
                for suffix, img in images.items():
                    add(f'{kind}_{name}{suffix}', function(img, gt_img, mask, **kwargs))

    def _specialisation(self, matrix, net, gt_img, masks, images, psnr_opt):
        """Every expert alone on this image, scored inside every region (plus the blend and the control)."""
        kwargs = dict(crop_border=psnr_opt.get('crop_border', 0), test_y_channel=psnr_opt.get('test_y_channel', False))
        # The background expert alone is already among the compared images.
        with self.speedups.validation_autocast(self.device):
            outputs = OrderedDict((name, images['_background'] if name == BACKGROUND else
                                   tensor2img([expert_alone(net, name, self.lq).cpu()])) for name in net.names)
        outputs['MoE-SR'] = images['']
        if '_reference' in images:
            outputs['single network'] = images['_reference']
        outputs['bicubic'] = images['_bicubic']
        for row, img in outputs.items():
            for region, mask in masks.items():
                matrix.add(row, region, masked_psnr(img, gt_img, mask, **kwargs))

    def _report_specialisation(self, matrix, dataset_name, current_iter, tb_logger):
        get_root_logger().info(f'Specialisation on {dataset_name} at {current_iter} (PSNR of each expert alone inside '
                               'each region; rows: experts, columns: regions):\n' + matrix.table())
        if tb_logger:
            for (row, region), value in matrix.means().items():
                tb_logger.add_scalar(f'specialisation/{dataset_name}/{row}/{region}', value, current_iter)
        if self.opt['rank'] == 0:
            path = osp.join(self.opt['path']['visualization'], f'specialisation_{dataset_name}_{current_iter}.png')
            matrix.save_heatmap(path, title=f'{dataset_name}, iteration {current_iter}: PSNR-Y inside each region')

    def _save_images(self, img_name, dataset_name, current_iter, sr_img, bg_img):
        if self.opt['is_train']:
            stem = osp.join(self.opt['path']['visualization'], img_name, f'{img_name}_{current_iter}')
        else:
            suffix = self.opt['val'].get('suffix') or self.opt['name']
            stem = osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_{suffix}')
        write_png(f'{stem}.png', sr_img)
        if self.opt['val'].get('save_background', True):
            write_png(f'{stem}_background.png', bg_img)
        if self.opt['val'].get('save_overlay', True):
            overlay = gate_overlay(self.lq[0], self.gate_weights[0], self.bare_net.categories)
            write_png(f'{stem}_gate.png', np.ascontiguousarray(overlay[..., ::-1]))

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
        """The MoE-SR table: the blend beside the equal-budget single network, the background expert alone
        and bicubic, on the whole images and inside each category; also written to comparison_<dataset>.txt."""
        results = self.metric_results
        kinds = [kind for kind in ('psnr', 'ssim', 'color_bias') if kind in results]
        if not kinds:
            return
        baseline = '_reference' if f'{kinds[0]}_reference' in results else '_background'
        columns = [('', 'MoE-SR'), ('_reference', 'single'), ('_background', 'bg alone'), ('_bicubic', 'bicubic')]
        columns = [(suffix, title) for suffix, title in columns if f'{kinds[0]}{suffix}' in results]
        described = ', '.join(f'{kind.upper()}' + (' Y' if region_opts.get(kind, {}).get('test_y_channel') else '') +
                              f' crop {region_opts.get(kind, {}).get("crop_border", 0)}' for kind in kinds
                              if kind in region_opts) + ('; COLOR_BIAS: largest mean channel offset, grey levels'
                                                         if 'color_bias' in kinds else '')
        gain_of = 'single' if baseline == '_reference' else 'bg alone'
        lines = [f'MoE-SR on {dataset_name} at {current_iter} ({described}; regions = labelled pixels; single = the '
                 f'equal-budget single network; gain = MoE-SR - {gain_of}; per image: gate {times[0] * 1000:.0f} ms + '
                 f'experts and blend {times[1] * 1000:.0f} ms' +
                 (f', single network {times[2] * 1000:.0f} ms' if baseline == '_reference' else '') + '):',
                 f'\t{"region":<12}{"images":>7}{"area":>7}   ' + ''.join(
                     ''.join(f'{(SHORT_NAMES[kind] + " " if not suffix else "") + title:>14}'
                             for suffix, title in columns) +
                     f'{"gain":>9}' for kind in kinds)]
        rows = [('all', '', None)] + [(name, f'_{name}', shares.get(name)) for name in self.bare_net.categories]
        for label, region, share in rows:
            if f'{kinds[0]}{region}' not in results:
                continue
            count = self.region_image_counts.get(f'{kinds[0]}{region}', 0)
            area = '100%' if share is None else f'{100 * np.mean(share):.0f}%'
            cells = ''
            for kind in kinds:
                digits = 4 if kind == 'ssim' else 2
                values = [results.get(f'{kind}{region}{suffix}', float('nan')) for suffix, _ in columns]
                gain = values[0] - results.get(f'{kind}{region}{baseline}', float('nan'))
                cells += ''.join(f'{value:>14.{digits}f}' if not np.isnan(value) else f'{"-":>14}' for value in values)
                cells += f'{gain:>+9.{digits}f}' if not np.isnan(gain) else f'{"-":>9}'
            lines.append(f'\t{label:<12}{count:>7}{area:>7}   {cells}')
        table = '\n'.join(lines)
        get_root_logger().info(table)
        if self.opt['rank'] == 0:
            atomic_write_text(osp.join(self.opt['path']['log'], f'comparison_{dataset_name}.txt'), table + '\n')


def expert_alone(net, name, lq):
    """One expert of a ``MoESRNet`` on the whole LR image, in eval mode and without gradients."""
    expert = net.experts[name]
    was_training = expert.training
    expert.eval()
    with torch.no_grad():
        output = expert(lq)
    expert.train(was_training)
    return output


def ema_update(ema_net, net, decay):
    """BasicSR's EMA rule (``model_ema``) for a network other than net_g."""
    ema_params = dict(ema_net.named_parameters())
    with torch.no_grad():
        for name, param in net.named_parameters():
            ema_params[name].mul_(decay).add_(param, alpha=1 - decay)


def stage_schedule(train_opt):
    """``[(stage, first_iter, last_iter), ...]`` (1-based, inclusive) from ``train.stage`` or ``train.stages``."""
    if 'stages' not in train_opt:
        return [(train_opt['stage'], 1, int(train_opt['total_iter']))]
    schedule, first = [], 1
    for entry in train_opt['stages']:
        schedule.append((entry['stage'], first, first + entry['iters'] - 1))
        first += entry['iters']
    return schedule
