"""The figures MoE-SR is judged by: the blend beside its baselines, overall and inside each category.

Keys are BasicSR's metric names with suffixes: ``psnr`` (the blend), ``psnr_reference`` (the equal-budget
control), ``psnr_background`` (the background expert alone), ``psnr_bicubic``; inside a category ``psnr_people``,
``psnr_people_reference``, ... :class:`MetricSums` averages them over the images that have them, and
:func:`comparison_table` lays them out for the log and ``comparison_<set>.txt``.
"""
from collections import OrderedDict

import numpy as np
import torch

SHORT_NAMES = {'psnr': 'PSNR', 'ssim': 'SSIM', 'color_bias': 'BIAS'}  # table headers
# suffix -> column title, in table order ('' is the blend)
COLUMNS = (('', 'MoE-SR'), ('_reference', 'single'), ('_background', 'bg alone'), ('_bicubic', 'bicubic'))


def bicubic_upscale(lq, scale, size=None):
    """MATLAB-style bicubic upscaling (the SR literature's bicubic baseline) of a CHW tensor in [0, 1],
    clamped, cut or padded by edge replication to ``size`` (H, W) when given."""
    from basicsr.utils.matlab_functions import imresize
    up = imresize(lq.float(), scale).clamp(0, 1)
    if size is not None:
        height, width = size
        up = up[:, :height, :width]
        pad_h, pad_w = height - up.shape[1], width - up.shape[2]
        if pad_h or pad_w:
            up = torch.nn.functional.pad(up[None], (0, pad_w, 0, pad_h), mode='replicate')[0]
    return up


class MetricSums:
    """Means of metric values over the images that gave one (NaN values, e.g. an empty region, left out), and the
    share of the image each category covered."""

    def __init__(self):
        self.sums, self.counts, self.areas = OrderedDict(), OrderedDict(), OrderedDict()

    def add(self, key, value):
        if not np.isnan(value):
            self.sums[key] = self.sums.get(key, 0.) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def add_area(self, region, share):
        self.areas.setdefault(region, []).append(share)

    def means(self):
        return OrderedDict((key, self.sums[key] / self.counts[key]) for key in self.sums)


def describe_metrics(kinds, metric_opts):
    """``PSNR Y crop 2, SSIM Y crop 2; COLOR_BIAS: ...``: how each metric of the table was computed."""
    text = ', '.join(f'{kind.upper()}' + (' Y' if metric_opts[kind].get('test_y_channel') else '') +
                     f' crop {metric_opts[kind]["crop_border"]}' for kind in kinds if kind in metric_opts)
    return text + ('; COLOR_BIAS: largest mean channel offset, grey levels' if 'color_bias' in kinds else '')


def comparison_table(sums, categories, dataset_name, current_iter, metric_opts, times):
    """The comparison table (text) of a validation pass; None without PSNR, SSIM or colour bias among the metrics.

    Args:
        sums (MetricSums): The pass's values.
        categories (list[str]): The network's categories (rows after ``all``).
        metric_opts (dict): ``{kind: options}`` of the region metrics (psnr, ssim) and colour bias.
        times (sequence): Mean seconds per image of the gate, of the experts and blend, and of the control.
    """
    results = sums.means()
    kinds = [kind for kind in ('psnr', 'ssim', 'color_bias') if kind in results]
    if not kinds:
        return None
    baseline = '_reference' if f'{kinds[0]}_reference' in results else '_background'
    columns = [(suffix, title) for suffix, title in COLUMNS if f'{kinds[0]}{suffix}' in results]
    gain_of = 'single' if baseline == '_reference' else 'bg alone'
    lines = [f'MoE-SR on {dataset_name} at {current_iter} ({describe_metrics(kinds, metric_opts)}; regions = labelled '
             f'pixels; single = the equal-budget single network; gain = MoE-SR - {gain_of}; per image: gate '
             f'{times[0] * 1000:.0f} ms + experts and blend {times[1] * 1000:.0f} ms' +
             (f', single network {times[2] * 1000:.0f} ms' if baseline == '_reference' else '') + '):',
             f'\t{"region":<12}{"images":>7}{"area":>7}   ' + ''.join(
                 ''.join(f'{(SHORT_NAMES[kind] + " " if not suffix else "") + title:>14}' for suffix, title in columns)
                 + f'{"gain":>9}' for kind in kinds)]
    for label, region in [('all', '')] + [(name, f'_{name}') for name in categories]:
        if f'{kinds[0]}{region}' not in results:
            continue
        count = sums.counts.get(f'{kinds[0]}{region}', 0)
        area = '100%' if not region else f'{100 * np.mean(sums.areas[label]):.0f}%'
        cells = ''
        for kind in kinds:
            digits = 4 if kind == 'ssim' else 2
            values = [results.get(f'{kind}{region}{suffix}', float('nan')) for suffix, _ in columns]
            gain = values[0] - results.get(f'{kind}{region}{baseline}', float('nan'))
            cells += ''.join(f'{value:>14.{digits}f}' if not np.isnan(value) else f'{"-":>14}' for value in values)
            cells += f'{gain:>+9.{digits}f}' if not np.isnan(gain) else f'{"-":>9}'
        lines.append(f'\t{label:<12}{count:>7}{area:>7}   {cells}')
    return '\n'.join(lines)
