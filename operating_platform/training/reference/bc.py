"""A small behaviour-cloning policy in numpy: state + coarse camera views -> action chunk.

Deliberately tiny (one tanh layer) so it trains in seconds on CPU; it exists to prove
the whole path from a recorded dataset through the loader to decreasing loss, and
to be the example a real policy replaces. Inputs and targets are normalised with
the dataset's own statistics; padded steps of the action chunk (past the end of
the episode) do not count in the loss.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from operating_platform.dataset.format import ACTION_KEY, STATE_KEY

from .optim import Params
from operating_platform.training.reader import ACTION_PAD_KEY, LeRobotReader


class BCPolicy:
    def __init__(
        self,
        state_mean: np.ndarray,
        state_std: np.ndarray,
        action_mean: np.ndarray,
        action_std: np.ndarray,
        horizon: int,
        camera_keys: list[str],
        hidden: int = 64,
        image_grid: tuple[int, int] = (4, 4),
    ):
        self.state_mean, self.state_std = state_mean.astype(np.float32), state_std.astype(np.float32)
        self.action_mean, self.action_std = action_mean.astype(np.float32), action_std.astype(np.float32)
        self.horizon, self.camera_keys = horizon, list(camera_keys)
        self.hidden, self.image_grid = hidden, tuple(image_grid)
        self.action_dim = self.action_mean.size
        self.input_dim = self.state_mean.size + len(self.camera_keys) * self.image_grid[0] * self.image_grid[1] * 3

    @classmethod
    def for_dataset(cls, reader: LeRobotReader, **kwargs) -> "BCPolicy":
        return cls(*reader.vector_stats(STATE_KEY), *reader.vector_stats(ACTION_KEY),
                   horizon=reader.action_horizon, camera_keys=reader.camera_keys, **kwargs)

    def init(self, seed: int = 0) -> Params:
        rng = np.random.default_rng(seed)
        out = self.horizon * self.action_dim
        return {
            "w1": (rng.normal(0, 1, (self.input_dim, self.hidden)) / np.sqrt(self.input_dim)).astype(np.float32),
            "b1": np.zeros(self.hidden, np.float32),
            "w2": (rng.normal(0, 1, (self.hidden, out)) / np.sqrt(self.hidden)).astype(np.float32),
            "b2": np.zeros(out, np.float32),
        }

    def features(self, batch: dict[str, Any]) -> np.ndarray:
        parts = [(batch[STATE_KEY][:, 0, :] - self.state_mean) / self.state_std]
        gh, gw = self.image_grid
        for key in self.camera_keys:
            images = batch[key]
            scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
            coarse = [cv2.resize(img, (gw, gh), interpolation=cv2.INTER_AREA) for img in images]
            parts.append(np.stack(coarse).reshape(len(images), -1).astype(np.float32) * scale - 0.5)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _forward(self, params: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hid = np.tanh(x @ params["w1"] + params["b1"])
        return hid, hid @ params["w2"] + params["b2"]

    def predict(self, params: Params, batch: dict[str, Any]) -> np.ndarray:
        """Action chunks (B, H, D) in the dataset's units."""
        _, out = self._forward(params, self.features(batch))
        return out.reshape(-1, self.horizon, self.action_dim) * self.action_std + self.action_mean

    def compute_loss(self, params: Params, batch: dict[str, Any]) -> tuple[float, np.ndarray, Params, dict[str, float]]:
        """Masked MSE of normalised action chunks: (mean, per-sample, gradients, metrics)."""
        x = self.features(batch)
        b = x.shape[0]
        hid, out = self._forward(params, x)
        target = ((batch[ACTION_KEY] - self.action_mean) / self.action_std).reshape(b, -1)
        valid = np.repeat(~batch[ACTION_PAD_KEY], self.action_dim, axis=1).astype(np.float32)
        count = np.maximum(valid.sum(1), 1.0)
        err = (out - target) * valid
        per_sample = (err**2).sum(1) / count
        dout = 2.0 * err / count[:, None] / b
        dhid = (dout @ params["w2"].T) * (1.0 - hid**2)
        grads = {"w2": hid.T @ dout, "b2": dout.sum(0), "w1": x.T @ dhid, "b1": dhid.sum(0)}
        grads = {k: v.astype(np.float32) for k, v in grads.items()}
        metrics = {"valid_fraction": float(valid.mean())}
        return float(per_sample.mean()), per_sample.astype(np.float64), grads, metrics
