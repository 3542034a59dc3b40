"""Cheap stand-ins for a VLA tokenizer, dataset and model, for testing the training harness.

They are small but honest: the dataset is a real loader source (deterministic from
(seed, index), so checkpoints and resumption are exercised for real); the model has
real parameters and analytic gradients, so the optimizer, norms and losses move as
in training. Per-sample losses follow the distribution hard-example tracking is
built for: mostly 0.5-2.0, with ~12% of samples at 3-10, decided by each sample's
content (so the same sample is always hard).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import numpy as np

from operating_platform.dataset.format import ACTION_KEY, IMAGE_KEY_PREFIX, STATE_KEY

from .optim import Params

DIRECTIONS = ["left", "right", "forward", "back", "up", "down"]
TASKS = ["pick up the red cube", "place the cup on the plate", "open the drawer", "stack the blue block"]
_SPECIAL = ["<pad>", "<bos>", "<eos>"]
_WORDS = ["move", "and", "cm", *DIRECTIONS, *sorted({w for t in TASKS for w in t.split()})]
_NUMBERS = [str(n) for n in range(1, 31)]
_HASH_BUCKETS = 32
IMAGE_KEY = IMAGE_KEY_PREFIX + "base"


class MockTokenizer:
    """Word-level, deterministic. '10cm' is two tokens ('10', 'cm'), re-joined by decode."""

    PAD, BOS, EOS = 0, 1, 2

    def __init__(self):
        self.vocab = [*_SPECIAL, *_WORDS, *_NUMBERS]
        self._ids = {w: i for i, w in enumerate(self.vocab)}
        self.vocab_size = len(self.vocab) + _HASH_BUCKETS

    def _word_ids(self, word: str) -> list[int]:
        if word.endswith("cm") and word[:-2].isdigit() and word[:-2] in self._ids:
            return [self._ids[word[:-2]], self._ids["cm"]]
        if word in self._ids:
            return [self._ids[word]]
        return [len(self.vocab) + zlib.crc32(word.encode()) % _HASH_BUCKETS]  # stable across runs

    def encode(self, text: str, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(token ids int32, mask bool); padded/truncated to max_len when given."""
        ids = [self.BOS] + [i for w in text.lower().split() for i in self._word_ids(w)] + [self.EOS]
        if max_len is None:
            return np.asarray(ids, np.int32), np.ones(len(ids), bool)
        ids = ids[:max_len]
        tokens = np.full(max_len, self.PAD, np.int32)
        tokens[: len(ids)] = ids
        mask = np.zeros(max_len, bool)
        mask[: len(ids)] = True
        return tokens, mask

    def decode(self, tokens: np.ndarray, mask: np.ndarray | None = None) -> str:
        words: list[str] = []
        for pos, tok in enumerate(np.asarray(tokens).tolist()):
            if (mask is not None and not mask[pos]) or tok in (self.PAD, self.BOS, self.EOS):
                continue
            word = self.vocab[tok] if tok < len(self.vocab) else f"<unk{tok - len(self.vocab)}>"
            if word == "cm" and words and words[-1].isdigit():
                words[-1] += "cm"
            else:
                words.append(word)
        return " ".join(words)


class MockDataset:
    """Samples with the real structure (image, state, action chunk, tokenized prompt and language action)."""

    def __init__(
        self,
        num_samples: int = 4096,
        seed: int = 0,
        image_hw: tuple[int, int] = (64, 64),
        state_dim: int = 7,
        action_horizon: int = 16,
        max_token_len: int = 16,
    ):
        if state_dim < 4:
            raise ValueError(f"MockDataset: state_dim must be >= 4 (it encodes the language action), got {state_dim}")
        self.num_samples, self.seed = num_samples, seed
        self.image_hw, self.state_dim = tuple(image_hw), state_dim
        self.action_horizon, self.max_token_len = action_horizon, max_token_len
        self.tokenizer = MockTokenizer()

    def __len__(self) -> int:
        return self.num_samples

    def fingerprint(self) -> str:
        desc = f"mock:{self.num_samples}:{self.seed}:{self.image_hw}:{self.state_dim}:{self.action_horizon}:{self.max_token_len}"
        return hashlib.sha256(desc.encode()).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"MockDataset(num_samples={self.num_samples}, seed={self.seed})"

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"MockDataset: index {index} out of range [0, {self.num_samples})")
        rng = np.random.default_rng([self.seed, index])
        d1, d2 = rng.integers(0, len(DIRECTIONS), 2)
        n1, n2 = rng.integers(1, 31, 2)
        lang_action = f"move {DIRECTIONS[d1]} {n1}cm and move {DIRECTIONS[d2]} {n2}cm"
        task = TASKS[int(rng.integers(0, len(TASKS)))]
        state = rng.normal(0.0, 0.1, self.state_dim).astype(np.float32)
        state[:4] = [d1 / 5.0, n1 / 30.0, d2 / 5.0, n2 / 30.0]  # the language action is predictable from state
        prompt_tokens, prompt_mask = self.tokenizer.encode(task, self.max_token_len)
        act_tokens, act_mask = self.tokenizer.encode(lang_action, self.max_token_len)
        h, w = self.image_hw
        image = np.empty((h, w, 3), np.uint8)
        image[:] = (40 * d1 % 256, 8 * n1, 40 * d2 % 256)
        y, x = rng.integers(0, max(1, h - h // 4)), rng.integers(0, max(1, w - w // 4))
        image[y : y + h // 4, x : x + w // 4] = rng.integers(0, 256, 3, dtype=np.uint8)
        return {
            IMAGE_KEY: image,
            STATE_KEY: state[None, :],
            ACTION_KEY: np.cumsum(rng.normal(0, 0.05, (self.action_horizon, self.state_dim)), axis=0).astype(np.float32),
            "tokenized_prompt": prompt_tokens,
            "tokenized_prompt_mask": prompt_mask,
            "tokenized_langact": act_tokens,
            "tokenized_langact_mask": act_mask,
            "task": task,
            "index": np.int64(index),
        }


def sample_difficulty(batch: dict[str, Any]) -> np.ndarray:
    """Per-sample loss scale from the sample's content: 0.5-2.0, or 3.0-10.0 for ~12% of samples."""
    out = np.empty(len(batch["task"]), np.float64)
    for row in range(out.size):
        digest = hashlib.blake2b(batch["tokenized_langact"][row].tobytes() + batch[STATE_KEY][row].tobytes(), digest_size=8).digest()
        u_hard, u_value = np.frombuffer(digest, np.uint32) / 2.0**32
        out[row] = 3.0 + 7.0 * u_value if u_hard < 0.12 else 0.5 + 1.5 * u_value
    return out


MODEL_WEIGHT = 0.5


class MockModel:
    """State + prompt -> tokens of the language action, through one tanh layer (128 wide)."""

    def __init__(self, vocab_size: int, state_dim: int = 7, max_token_len: int = 16, hidden: int = 128):
        self.vocab_size, self.state_dim, self.max_token_len, self.hidden = vocab_size, state_dim, max_token_len, hidden

    def init(self, seed: int = 0) -> Params:
        rng = np.random.default_rng(seed)
        h, v = self.hidden, self.vocab_size
        return {
            "embed": rng.normal(0, 0.1, (v, h)).astype(np.float32),
            "state_proj": rng.normal(0, 0.5, (self.state_dim, h)).astype(np.float32),
            "pos": rng.normal(0, 0.5, (self.max_token_len, h)).astype(np.float32),
            "out": rng.normal(0, 0.1, (h, v)).astype(np.float32),
            "out_bias": np.zeros(v, np.float32),
        }

    def compute_loss(self, params: Params, batch: dict[str, Any]) -> tuple[float, np.ndarray, Params, dict[str, float]]:
        """(mean loss, per-sample losses, gradients, metrics).

        per-sample loss = content difficulty (fixed per sample, see sample_difficulty)
        + MODEL_WEIGHT * next-token cross-entropy of the language action / log(V); the
        second term is what training reduces."""
        prompt, prompt_mask = batch["tokenized_prompt"], batch["tokenized_prompt_mask"].astype(np.float32)
        tokens, mask = batch["tokenized_langact"], batch["tokenized_langact_mask"].astype(np.float32)
        state = batch[STATE_KEY][:, 0, :].astype(np.float32)
        b = state.shape[0]
        prompt_count = np.maximum(prompt_mask.sum(1, keepdims=True), 1.0)
        ctx = state @ params["state_proj"] + np.einsum("bl,blh->bh", prompt_mask, params["embed"][prompt]) / prompt_count
        hid = np.tanh(ctx[:, None, :] + params["pos"][None])  # (B, L, H)
        logits = hid @ params["out"] + params["out_bias"]  # (B, L, V)
        logits = logits - logits.max(-1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(-1, keepdims=True)
        picked = np.take_along_axis(probs, tokens[..., None], -1)[..., 0]
        token_count = np.maximum(mask.sum(1), 1.0)
        ce = -(np.log(picked + 1e-12) * mask).sum(1) / token_count
        weight = np.full(b, MODEL_WEIGHT / np.log(self.vocab_size))
        per_sample = sample_difficulty(batch) + ce * weight

        # backward of mean(per_sample)
        dlogits = probs.copy()
        np.put_along_axis(dlogits, tokens[..., None], np.take_along_axis(dlogits, tokens[..., None], -1) - 1.0, -1)
        dlogits *= (mask * (weight / token_count / b)[:, None])[..., None]
        grads = {
            "out": np.einsum("blh,blv->hv", hid, dlogits),
            "out_bias": dlogits.sum((0, 1)),
        }
        dpre = (dlogits @ params["out"].T) * (1.0 - hid**2)
        grads["pos"] = dpre.sum(0)
        dctx = dpre.sum(1)
        grads["state_proj"] = state.T @ dctx
        dembed = np.zeros_like(params["embed"])
        np.add.at(dembed, prompt, (prompt_mask / prompt_count)[..., None] * dctx[:, None, :])
        grads["embed"] = dembed
        grads = {k: v.astype(np.float32) for k, v in grads.items()}
        correct = (probs.argmax(-1) == tokens) * mask
        metrics = {"token_acc": float(correct.sum() / max(mask.sum(), 1.0))}
        return float(per_sample.mean()), per_sample, grads, metrics
