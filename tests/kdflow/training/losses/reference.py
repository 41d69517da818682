"""Fixed inputs and NumPy helpers shared by the loss reference tests."""

import numpy as np

S = np.array([[2.0, 0.5, -1.0, 0.3], [0.1, 0.2, 0.3, -0.4], [1.5, -2.0, 0.0, 0.7]])  # student logits
T = np.array([[1.0, 1.5, -0.5, 0.0], [3.0, -1.0, 0.0, 0.5], [0.2, 0.1, 2.5, -1.0]])  # teacher logits
Y = np.array([0, 2, 2])  # targets


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def kl(p, q):
    """Row-wise KL(p || q)."""
    return (p * (np.log(p) - np.log(q))).sum(-1)
