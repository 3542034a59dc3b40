"""Adam over a dict of numpy arrays, with a state that checkpoints as plain arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]


def global_norm(tree: Params) -> float:
    return float(np.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in tree.values())))


@dataclass(frozen=True)
class Adam:
    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0

    def init(self, params: Params) -> Params:
        state = {f"m/{k}": np.zeros_like(v) for k, v in params.items()}
        state.update({f"v/{k}": np.zeros_like(v) for k, v in params.items()})
        state["count"] = np.zeros((), np.int64)
        return state

    def update(self, params: Params, grads: Params, state: Params) -> tuple[Params, Params]:
        """New (params, state); inputs are not modified."""
        missing = set(params) ^ set(grads)
        if missing:
            raise KeyError(f"Adam.update: params and grads differ in {sorted(missing)}")
        scale = 1.0
        if self.max_grad_norm is not None:
            norm = global_norm(grads)
            scale = min(1.0, self.max_grad_norm / (norm + 1e-12))
        count = state["count"] + 1
        new_params, new_state = {}, {"count": count}
        bc1 = 1.0 - self.beta1 ** float(count)
        bc2 = 1.0 - self.beta2 ** float(count)
        for k, p in params.items():
            g = grads[k] * scale
            m = self.beta1 * state[f"m/{k}"] + (1.0 - self.beta1) * g
            v = self.beta2 * state[f"v/{k}"] + (1.0 - self.beta2) * g * g
            step = self.learning_rate * (m / bc1) / (np.sqrt(v / bc2) + self.eps)
            new_params[k] = (p - step).astype(p.dtype)
            new_state[f"m/{k}"] = m.astype(p.dtype)
            new_state[f"v/{k}"] = v.astype(p.dtype)
        return new_params, new_state
