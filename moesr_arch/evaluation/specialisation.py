"""The expert-by-region specialisation matrix of MoE-SR's evaluation: every expert alone, scored inside every region."""
from collections import OrderedDict

import numpy as np

from moesr_arch.utils.atomic import atomic_write

BASELINE_ROWS = ('MoE-SR', 'single network', 'bicubic')  # rows that are not one expert alone


class SpecialisationMatrix:
    """Mean PSNR of each row (an expert alone, or the blend, or a baseline) inside each region, over the
    images that contain the region. Rows and regions are added as met; NaN values are left out."""

    def __init__(self, experts, regions):
        self.rows = list(experts)
        self.regions = list(regions)
        self.sums = OrderedDict()
        self.numbers = OrderedDict()

    def add(self, row, region, value):
        if row not in self.rows:
            self.rows.append(row)
        if np.isnan(value):
            return
        key = (row, region)
        self.sums[key] = self.sums.get(key, 0.) + float(value)
        self.numbers[key] = self.numbers.get(key, 0) + 1

    @property
    def counts(self):
        return np.array(list(self.numbers.values()) or [0])

    def means(self):
        return OrderedDict((key, self.sums[key] / self.numbers[key]) for key in self.sums)

    def grid(self):
        """(rows x regions) array of means, NaN where a region was never seen."""
        means = self.means()
        return np.array([[means.get((row, region), np.nan) for region in self.regions] for row in self.rows])

    def best_rows(self):
        """Region -> the expert row (not the blend or a baseline) with the highest PSNR there."""
        grid = self.grid()
        experts = [index for index, row in enumerate(self.rows) if row in self.expert_rows]
        best = {}
        for column, region in enumerate(self.regions):
            values = grid[experts, column]
            if not np.isnan(values).all():
                best[region] = self.rows[experts[int(np.nanargmax(values))]]
        return best

    @property
    def expert_rows(self):
        return [row for row in self.rows if row not in BASELINE_ROWS]

    def table(self):
        grid = self.grid()
        width = max(12, *(len(region) + 2 for region in self.regions))
        lines = ['\t' + f'{"expert":<16}' + ''.join(f'{region:>{width}}' for region in self.regions)]
        best = self.best_rows()
        for index, row in enumerate(self.rows):
            cells = ''
            for column, region in enumerate(self.regions):
                value = grid[index, column]
                mark = '*' if best.get(region) == row else ' '
                cells += f'{value:>{width - 1}.2f}{mark}' if not np.isnan(value) else f'{"-":>{width - 1}} '
            lines.append(f'\t{row:<16}{cells}')
        lines.append('\t(* best expert inside each region; an expert that specialises is best in its own column)')
        return '\n'.join(lines)

    def save_heatmap(self, path, title=''):
        """A heat map: colour = PSNR minus the column's mean over the expert rows, numbers = PSNR (dB)."""
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        grid = self.grid()
        experts = [index for index, row in enumerate(self.rows) if row in self.expert_rows]
        centred = grid - np.nanmean(grid[experts], axis=0, keepdims=True)
        # The scale follows the experts, the blend and the control; bicubic, far below, just saturates.
        scaled = centred[[index for index, row in enumerate(self.rows) if row != 'bicubic']]
        limit = max(float(np.nanmax(np.abs(scaled))) if not np.isnan(scaled).all() else 0.0, 0.05)
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(self.regions), 1.0 + 0.45 * len(self.rows)), dpi=110)
        image = ax.imshow(np.nan_to_num(centred), cmap='RdBu', vmin=-limit, vmax=limit, aspect='auto')
        best = self.best_rows()
        for i, row in enumerate(self.rows):
            for j, region in enumerate(self.regions):
                if not np.isnan(grid[i, j]):
                    weight = 'bold' if best.get(region) == row else 'normal'
                    ax.text(j, i, f'{grid[i, j]:.2f}', ha='center', va='center', fontsize=8, fontweight=weight)
        ax.set_xticks(range(len(self.regions)), [f'{region}\npixels' for region in self.regions], fontsize=8)
        ax.set_yticks(range(len(self.rows)), [f'{row} expert' if row in self.expert_rows else row
                                              for row in self.rows], fontsize=8)
        ax.axhline(len(experts) - 0.5, color='black', linewidth=1)
        fig.colorbar(image, ax=ax, label='dB vs the experts\' mean in the column', shrink=0.8)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        try:
            with atomic_write(path) as f:
                fig.savefig(f, format='png')
        finally:
            plt.close(fig)
