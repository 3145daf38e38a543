"""SimAM (Yang et al., ICML 2021): a parameter-free attention module, registered as a yolo-improve ``same`` module.

Each activation is weighted by the sigmoid of its energy, the inverse of how much it stands out from the other
activations of its channel (an energy function from neuroscience's spatial suppression). No parameters, so it adds
no weights and keeps every layer shape: a channel-preserving ("same") row ``[-1, 1, SimAM, []]`` or
``[-1, 1, SimAM, [1e-4]]`` (lambda, the regulariser).
"""

import torch
from torch import nn

import yolo_improve


@yolo_improve.register(kind="same", args="[e_lambda=1e-4]", max_args=1)
class SimAM(nn.Module):
    """SimAM (Yang et al., ICML 2021): parameter-free 3D attention weights from an energy function."""

    def __init__(self, c1: int, e_lambda: float = 1e-4):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        energy_inv = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        return x * torch.sigmoid(energy_inv)
