import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class ExpertBalanceLoss(nn.Module):
    """Balance loss of a per-pixel router (MoEISR): spreads the pixels over the experts.

    With ``P_e`` the mean routing probability of expert ``e`` over all pixels of the batch and ``t_e`` its
    target share (uniform by default), the loss is ``loss_weight * K * sum_e (P_e - t_e) ** 2``: zero at
    the target, ``loss_weight * (K - 1)`` when every pixel goes to one expert under a uniform target.
    (With a uniform target this is the squared coefficient of variation of the expert usage.)

    Args:
        loss_weight (float): Weight of the loss. Default: 1.0.
        target_shares (list[float] | None): Share of pixels each expert should get (K numbers summing to 1),
            e.g. more pixels on cheaper experts; ``None`` is uniform. Default: None.
    """

    def __init__(self, loss_weight=1.0, target_shares=None):
        super().__init__()
        self.loss_weight = loss_weight
        if target_shares is not None:
            target = torch.as_tensor(target_shares, dtype=torch.float32)
            if target.dim() != 1 or (target < 0).any() or abs(float(target.sum()) - 1) > 1e-3:
                raise ValueError(f'ExpertBalanceLoss target_shares must be non-negative numbers summing to 1, '
                                 f'got {target_shares}')
            self.register_buffer('target', target, persistent=False)
        else:
            self.target = None

    def forward(self, probs):
        """``probs``: routing probabilities (..., K) of every pixel (rows sum to 1)."""
        usage = probs.reshape(-1, probs.shape[-1]).mean(0)
        num_experts = usage.numel()
        if self.target is None:
            target = usage.new_full((num_experts, ), 1 / num_experts)
        elif self.target.numel() != num_experts:
            raise ValueError(f'ExpertBalanceLoss has {self.target.numel()} target shares for {num_experts} experts')
        else:
            target = self.target.to(usage)
        return self.loss_weight * num_experts * ((usage - target)**2).sum()
