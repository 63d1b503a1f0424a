import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


@LOSS_REGISTRY.register()
class ExpertBalanceLoss(nn.Module):
    """Balance loss of a per-pixel router (MoEISR): spreads the pixels over the experts.

    With ``f_e`` the share of pixels whose most probable expert is ``e`` (the expert inference uses; no
    gradient), ``P_e`` the mean routing probability of ``e`` over the batch and ``t_e`` its target share
    (uniform by default), the loss is ``loss_weight * (sum_e f_e * P_e / t_e - 1)`` (the Switch-Transformer
    balance loss, shifted to be 0 at the target): its gradient lowers the probability of experts that
    win more pixels than their share. It is 0 when routing matches the targets and ``loss_weight * (K - 1)``
    when every pixel goes to one expert with certainty under a uniform target. A balance term on the soft
    probabilities alone would be satisfied by near-uniform probabilities whose argmax still picks one
    expert everywhere, which is what inference would then do.

    Its option-file keys (``train.<name>_opt``): docs/options.md#expertbalanceloss.

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
        probs = probs.reshape(-1, probs.shape[-1])
        num_experts = probs.shape[-1]
        usage = probs.mean(0)
        winners = torch.bincount(probs.argmax(-1), minlength=num_experts).to(usage) / probs.shape[0]
        if self.target is None:
            target = usage.new_full((num_experts, ), 1 / num_experts)
        elif self.target.numel() != num_experts:
            raise ValueError(f'ExpertBalanceLoss has {self.target.numel()} target shares for {num_experts} experts')
        else:
            target = self.target.to(usage)
        return self.loss_weight * ((winners * usage / target.clamp_min(1e-8)).sum() - 1)
