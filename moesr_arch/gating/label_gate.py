"""LabelGate: the dataset's own category map as one-hot weights (teacher forcing, test-time upper bound)."""
import torch
import torch.nn.functional as F

from moesr_arch.gating.base import Gate, GateError


class LabelGate(Gate):
    """One-hot weights from ``data['category_map']`` (int64 ``[B, h, w]``, values 0..K, K = background).

    Its option-file keys: docs/options.md#labelgate.

    Args:
        categories (list[str]): category names in id order (from ``categories_file`` or ``categories``).
    """

    needs_labels = True

    def weights(self, lq, data):
        if not data or 'category_map' not in data:
            raise GateError('LabelGate needs the category_map of a CategoryPairedImageDataset batch '
                            '(the dataset has no labels, or a YOLOGate is meant here)')
        category_map = torch.as_tensor(data['category_map'], device=lq.device)
        if category_map.dim() == 2:
            category_map = category_map[None]
        if tuple(category_map.shape) != (lq.shape[0], lq.shape[2], lq.shape[3]):
            raise GateError(f'LabelGate: category_map {list(category_map.shape)} does not match the LR batch '
                            f'{list(lq.shape)}')
        k = self.num_categories
        if category_map.min() < 0 or category_map.max() > k:
            raise GateError(f'LabelGate: category_map values must be 0..{k} ({k} = background), got '
                            f'{int(category_map.min())}..{int(category_map.max())}')
        return F.one_hot(category_map.long(), k + 1).permute(0, 3, 1, 2).float()
