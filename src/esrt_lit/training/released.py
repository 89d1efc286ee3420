"""The released training recipe's optimiser (ESRT, Sec. 4.1, and the authors' code), its one home.

:data:`OPTIMIZER` is the node ``conf/optimizer/adam.yaml`` composes from (stored by
:func:`esrt_lit.configs.register_configs`) and the LightningModule's default
(:data:`esrt_lit.training.module.RELEASED_OPTIMIZER`). Plain values, so that reading it imports nothing.
"""

from __future__ import annotations

__all__ = ["OPTIMIZER"]

#: Adam, lr 2e-4, betas (0.9, 0.999), as a Hydra ``_partial_`` node.
OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2.0e-4, "betas": [0.9, 0.999]}
