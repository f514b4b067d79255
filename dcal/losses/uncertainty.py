"""Learned uncertainty weighting of several losses (Kendall et al., "Multi-Task
Learning Using Uncertainty to Weigh Losses", arXiv:1705.07115), the form the
DCAL paper uses: L = sum_i 0.5 * (exp(-w_i) * L_i + w_i)."""
import torch
from torch import nn


class UncertaintyWeighting(nn.Module):
    """Combine named losses with one learned log-variance w_i each (initialised to 0)."""

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = list(names)
        self.log_vars = nn.Parameter(torch.zeros(len(self.names)))

    def forward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = self.log_vars.new_zeros(())
        for i, name in enumerate(self.names):
            if name in losses:
                w = self.log_vars[i]
                total = total + 0.5 * (torch.exp(-w) * losses[name].float() + w)
        return total

    def weights(self) -> dict[str, float]:
        """Return the current exp(-w_i) factor of each loss, for logging."""
        return {name: float(torch.exp(-w)) for name, w in zip(self.names, self.log_vars.detach())}
