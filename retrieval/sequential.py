"""A sequential source: gSASRec (Petrov & Macdonald, 2023), a causal self-attention model of the next item.

SASRec's architecture (Kang & McAuley, 2018) trained the gSASRec way: at every position of a user's
sequence the next item is the positive and ``negatives`` items are sampled uniformly for that position;
the loss is generalised binary cross-entropy, whose β (set from ``gbce_t`` and the sampling rate)
corrects the overconfidence that plain BCE learns from few negatives. CPU, one thread, seeded.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HYPER_PARAMETERS = ("max_len", "dim", "blocks", "heads", "dropout", "negatives", "gbce_t", "lr", "batch_size",
                    "time_budget_s", "max_epochs", "patience", "seed", "device")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread (the machine is shared), then restore the caller's setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a position-wise feed-forward layer."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.projection = nn.Linear(dim, dim)
        self.feed_forward_norm = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(b, length, 3, self.heads, dim // self.heads).unbind(2)
        attended = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed,
            dropout_p=self.attention_dropout if self.training else 0.0)
        x = x + self.dropout(self.projection(attended.transpose(1, 2).reshape(b, length, dim)))
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


class _SASRec(nn.Module):
    """Item + position embeddings, causal blocks; the output at position t scores the item at t + 1."""

    def __init__(self, n_items: int, max_len: int, dim: int, blocks: int, heads: int, dropout: float):
        super().__init__()
        self.padding = n_items  # sequences are left-padded with this id; it is never a target
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([_Block(dim, heads, dropout) for _ in range(blocks)])
        self.norm = nn.LayerNorm(dim)
        # Item and position vectors of norm ~1: inputs are balanced, and the first logits (a layer-normed
        # state of norm ~sqrt(dim) against an item vector) have unit spread. Item vectors are stored
        # sqrt(dim) times smaller and scaled up when used (as SASRec does): with Adam, that trains the
        # embeddings sqrt(dim) times faster than the layers, which they need, each item being rare.
        self.item_scale = math.sqrt(dim)
        nn.init.normal_(self.items.weight, std=dim**-0.5 / self.item_scale)
        nn.init.normal_(self.positions.weight, std=dim**-0.5)
        with torch.no_grad():
            self.items.weight[n_items].zero_()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, max_len) item ids -> (batch, max_len, dim) hidden states (zero at padded positions)."""
        length = inputs.shape[1]
        real = inputs != self.padding
        # Position t sees positions <= t that hold an item; a padded position sees only itself (its
        # output is zeroed), so no softmax row is empty.
        causal = torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=inputs.device)
        allowed = ((causal & real[:, None, :]) | eye)[:, None, :, :]
        keep = real.unsqueeze(-1).to(torch.float32)
        x = self.item_vectors(inputs) + self.positions.weight[-length:]
        x = self.dropout(x) * keep
        for block in self.blocks:
            x = block(x, allowed) * keep
        return self.norm(x) * keep

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self.items(ids) * self.item_scale

    def item_matrix(self) -> torch.Tensor:
        return self.items.weight[: self.padding] * self.item_scale


class SequentialRecommender:
    """Scores every item as the next one after a user's time-ordered item sequence.

    ``fit`` trains until ``time_budget_s`` wall seconds or ``max_epochs`` epochs, whichever comes
    first (the budget is checked after every batch); with ``validation`` pairs it keeps the epoch with
    the best NDCG@10 and stops after ``patience`` epochs without improvement (generous: NDCG over a few
    hundred users is noisy, and on MovieLens the model stays at popularity level for ~10 epochs
    before it learns transitions). A run is reproducible from ``seed`` when ``max_epochs`` (not the
    wall-clock budget) ends it. Item indices are 0..n_items-1.
    """

    def __init__(self, max_len: int = 50, dim: int = 64, blocks: int = 2, heads: int = 1, dropout: float = 0.2,
                 negatives: int = 16, gbce_t: float = 0.75, lr: float = 1e-3, batch_size: int = 128,
                 time_budget_s: float = 120.0, max_epochs: int = 200, patience: int = 30, seed: int = 42,
                 device: str = "cpu"):
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.max_len = max_len
        self.dim = dim
        self.blocks = blocks
        self.heads = heads
        self.dropout = dropout
        self.negatives = negatives
        self.gbce_t = gbce_t
        self.lr = lr
        self.batch_size = batch_size
        self.time_budget_s = time_budget_s
        self.max_epochs = max_epochs
        self.patience = patience
        self.seed = seed
        self.device = device
        self.n_items = 0
        self.model: _SASRec | None = None
        self.epochs_run = 0
        self.train_seconds = 0.0
        self.best_validation_ndcg: float | None = None
        self.best_epoch: int | None = None

    # ---- training -------------------------------------------------------------------------------

    def fit(self, sequences: Sequence[np.ndarray], n_items: int,
            validation: Sequence[tuple[np.ndarray, int]] | None = None) -> SequentialRecommender:
        """Train on each user's item indices in time order; ``validation``: (prefix, next item) pairs."""
        if n_items < 2:
            raise ValueError("need at least two items")
        for seq in sequences:
            self._check_items(seq, n_items)
        self.n_items = n_items
        inputs, targets = self._windows(sequences)
        if not len(inputs):
            raise ValueError("no sequence has two or more items to learn a transition from")
        start = time.perf_counter()
        with _one_thread(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            rng = np.random.default_rng(self.seed)
            model = _SASRec(n_items, self.max_len, self.dim, self.blocks, self.heads, self.dropout).to(self.device)
            self.model = model
            optimiser = torch.optim.Adam(model.parameters(), lr=self.lr, betas=(0.9, 0.98))
            beta = self._gbce_beta()
            best_state: dict[str, torch.Tensor] | None = None
            self.best_validation_ndcg, self.best_epoch, stale, self.epochs_run = None, None, 0, 0
            out_of_time = False
            while self.epochs_run < self.max_epochs and not out_of_time:
                model.train()
                order = rng.permutation(len(inputs))
                for first in range(0, len(order), self.batch_size):
                    rows = order[first:first + self.batch_size]
                    loss = self._loss(model, inputs[rows], targets[rows], rng, beta)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    if time.perf_counter() - start >= self.time_budget_s:
                        out_of_time = True
                        break
                self.epochs_run += 1
                if validation:
                    ndcg = self._validation_ndcg(validation)
                    if self.best_validation_ndcg is None or ndcg > self.best_validation_ndcg:
                        self.best_validation_ndcg, self.best_epoch, stale = ndcg, self.epochs_run, 0
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    else:
                        stale += 1
                        if stale >= self.patience:
                            break
                    out_of_time = out_of_time or time.perf_counter() - start >= self.time_budget_s
            if best_state is not None:
                model.load_state_dict(best_state)
            model.eval()
        self.train_seconds = time.perf_counter() - start
        return self

    def _gbce_beta(self) -> float:
        """gBCE's β for sampling rate α = negatives / (n_items - 1): β = α (t (1 - 1/α) + 1/α)."""
        alpha = min(self.negatives / (self.n_items - 1), 1.0)
        return alpha * (self.gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha)

    def _windows(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Cut every sequence, from its end, into windows of max_len transitions (each transition once).

        Returns left-padded (windows, max_len) inputs and the next item at every position (padding
        where there is none).
        """
        inputs, targets = [], []
        for seq in sequences:
            seq = np.asarray(seq, dtype=np.int64)
            for end in range(len(seq), 1, -self.max_len):
                window = seq[max(0, end - self.max_len - 1):end]
                inputs.append(window[:-1])
                targets.append(window[1:])
        return self._pad(inputs), self._pad(targets)

    def _pad(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        out = np.full((len(rows), self.max_len), self.n_items, dtype=np.int64)
        for r, row in enumerate(rows):
            row = row[-self.max_len:]
            if len(row):
                out[r, -len(row):] = row
        return out

    def _loss(self, model: _SASRec, inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator,
              beta: float) -> torch.Tensor:
        # Windows are left-padded: columns that are padding in every row are dropped (short sequences train faster).
        width = int((targets != self.n_items).sum(axis=1).max())
        x = torch.from_numpy(np.ascontiguousarray(inputs[:, -width:])).to(self.device)
        y = torch.from_numpy(np.ascontiguousarray(targets[:, -width:])).to(self.device)
        negatives = torch.from_numpy(rng.integers(0, self.n_items, size=(*y.shape, self.negatives))).to(
            self.device)
        hidden = model(x)
        positive = (hidden * model.item_vectors(y)).sum(-1)
        negative = torch.einsum("bld,blnd->bln", hidden, model.item_vectors(negatives))
        # gBCE: -log σ(s+)^β - Σ log(1 - σ(s-)), written with softplus for stability.
        per_position = beta * F.softplus(-positive) + F.softplus(negative).sum(-1)
        mask = (y != model.padding).to(per_position.dtype)
        return (per_position * mask).sum() / mask.sum().clamp(min=1.0)

    def _validation_ndcg(self, validation: Sequence[tuple[np.ndarray, int]], k: int = 10) -> float:
        """NDCG@k of the next item, ranked among the items not already in its prefix (as the offline eval)."""
        gains = []
        for first in range(0, len(validation), 512):
            chunk = validation[first:first + 512]
            scores = self.score_many([prefix for prefix, _ in chunk])
            for row, (prefix, _) in enumerate(chunk):
                scores[row, np.asarray(prefix, dtype=np.int64)] = -np.inf
            target = np.array([t for _, t in chunk], dtype=np.int64)
            target_score = scores[np.arange(len(chunk)), target]
            rank = (scores > target_score[:, None]).sum(axis=1)
            gains.append(np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0))
        return float(np.concatenate(gains).mean())

    # ---- scoring --------------------------------------------------------------------------------

    def score(self, sequence: np.ndarray) -> np.ndarray:
        """Scores of every item as the next one after ``sequence`` (its last max_len items are used).

        An empty sequence carries no evidence: all scores are 0.
        """
        return self.score_many([sequence])[0]

    def score_many(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """(len(sequences), n_items) float32 scores, one forward pass for the whole batch."""
        assert self.model is not None, "fit or load first"
        for seq in sequences:
            self._check_items(seq, self.n_items)
        batch = self._pad([np.asarray(s, dtype=np.int64) for s in sequences])
        width = max((min(len(s), self.max_len) for s in sequences), default=0)
        if width == 0:
            return np.zeros((len(sequences), self.n_items), np.float32)
        model = self.model
        was_training = model.training
        model.eval()
        # Only the last `width` columns hold items; the rest is padding that no real position attends to.
        x = torch.from_numpy(batch[:, self.max_len - width:]).to(self.device)
        with _one_thread(), torch.inference_mode():
            last = model(x)[:, -1, :]
            scores = (last @ model.item_matrix().T).cpu().numpy()
        model.train(was_training)
        scores[np.array([len(s) == 0 for s in sequences])] = 0.0
        return scores

    @staticmethod
    def _check_items(seq: np.ndarray, n_items: int) -> None:
        seq = np.asarray(seq)
        if seq.size and (seq.min() < 0 or seq.max() >= n_items):
            raise ValueError(f"item indices must be in 0..{n_items - 1}; got {seq.min()}..{seq.max()}")

    # ---- persistence ----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.pt`` (the weights) and ``<path>.json`` (hyper-parameters, training record)."""
        assert self.model is not None, "fit first"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), path.with_suffix(".pt"))
        meta: dict[str, Any] = {name: getattr(self, name) for name in HYPER_PARAMETERS}
        meta.update(n_items=self.n_items, epochs_run=self.epochs_run, train_seconds=self.train_seconds,
                    best_validation_ndcg=self.best_validation_ndcg, best_epoch=self.best_epoch)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return path.with_suffix(".pt")

    @classmethod
    def load(cls, path: str | Path) -> SequentialRecommender:
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        out = cls(**{name: meta[name] for name in HYPER_PARAMETERS})
        out.n_items = int(meta["n_items"])
        out.epochs_run, out.train_seconds = int(meta["epochs_run"]), float(meta["train_seconds"])
        out.best_validation_ndcg, out.best_epoch = meta["best_validation_ndcg"], meta["best_epoch"]
        model = _SASRec(out.n_items, out.max_len, out.dim, out.blocks, out.heads, out.dropout)
        model.load_state_dict(torch.load(path.with_suffix(".pt"), map_location=out.device, weights_only=True))
        out.model = model.to(out.device).eval()
        return out
