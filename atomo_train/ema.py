"""Live EMA of the trainable parameters, saved in the training state and written as the weight file."""
from __future__ import annotations

import torch


class EMA:
    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for k, v in module.state_dict().items():
            if hasattr(v, "full_tensor"):  # FSDP2 shards: every process gathers the whole value (collective)
                v = v.full_tensor()
            s = self.shadow[k]
            if torch.is_floating_point(v):
                s.lerp_(v.detach().float().to(s.device), 1.0 - self.decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
