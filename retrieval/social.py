"""Friends' signal: which items the user's friends bought or liked, raw and weighted by taste overlap."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class FriendsSignal:
    def __init__(self, similarity_weighted: bool = True):
        self.similarity_weighted = similarity_weighted
        self.friend_weights: sp.csr_matrix | None = None  # users x users, nonzero only between friends

    def fit(self, positive: sp.csr_matrix, feedback: sp.csr_matrix, friends: sp.csr_matrix) -> FriendsSignal:
        """Weight each friendship by the cosine overlap of the two users' behaviour (plus a floor)."""
        binary = (feedback > 0).astype(np.float32).tocsr()
        norms = np.sqrt(np.asarray(binary.sum(axis=1)).ravel()) + 1e-9
        fr = friends.tocoo()
        if self.similarity_weighted and fr.nnz:
            overlap = np.asarray(binary[fr.row].multiply(binary[fr.col]).sum(axis=1)).ravel()
            w = overlap / (norms[fr.row] * norms[fr.col]) + 0.05
        else:
            w = np.ones(fr.nnz, np.float32)
        self.friend_weights = sp.csr_matrix((w.astype(np.float32), (fr.row, fr.col)), shape=friends.shape)
        return self

    def load(self, friend_weights: sp.csr_matrix) -> FriendsSignal:
        self.friend_weights = friend_weights.tocsr()
        return self

    def score(self, user: int, friend_ids: np.ndarray, friends_positive: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(number of friends who bought each item, taste-weighted sum over those friends).

        ``friends_positive`` holds the rows of ``friend_ids`` only (handed out by the user's scope).
        """
        assert self.friend_weights is not None, "fit first"
        n_items = friends_positive.shape[1]
        if friend_ids.size == 0:
            zero = np.zeros(n_items, np.float32)
            return zero, zero
        row = self.friend_weights[user]
        weights = np.zeros(friend_ids.size, np.float32)
        pos = np.searchsorted(friend_ids, row.indices)
        valid = (pos < friend_ids.size) & (friend_ids[np.minimum(pos, friend_ids.size - 1)] == row.indices)
        weights[pos[valid]] = row.data[valid]
        counts = np.asarray(friends_positive.sum(axis=0)).ravel()
        weighted = np.asarray(friends_positive.T @ weights).ravel()
        return counts, weighted
