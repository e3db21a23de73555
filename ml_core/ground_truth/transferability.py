"""Transferability scores that need a forward pass of the model on the target images.

Both take one model's features of the target's images ``features (n, d)`` and the labels
``labels (n,)`` (ints) and return a score, higher = better expected transfer.

* :func:`logme` -- LogME (You et al., ICML 2021): for each class, the log marginal likelihood
  (evidence) of a Bayesian linear regression from the features to that class's one-hot target,
  with the prior precision ``alpha`` and noise precision ``beta`` set by evidence maximisation
  (MacKay's fixed-point updates); the score is the mean over classes of the evidence per sample.
* :func:`h_score` -- H-score (Bao et al., ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))``, the
  share of the feature covariance explained by the class means. With more feature dimensions
  than images the sample covariance is singular, so ``cov(f)`` is Ledoit-Wolf shrunk (the
  "regularised H-score" of Ibrahim et al., ICLR 2022); ``shrinkage=0`` gives the original
  with only a tiny ridge.
* :func:`probe_accuracy` -- a linear probe: the k-fold cross-validated accuracy of a ridge classifier
  (:func:`ridge_probe_predict`: one-hot least squares, ridge strength chosen by leave-one-out inside
  each training part) on the standardised features. The cheap stand-in for a fine-tune that the product's budgeted mode reads.
"""

from __future__ import annotations

import numpy as np


def _as_inputs(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or y.ndim != 1 or len(f) != len(y):
        raise ValueError(f"features (n, d) and labels (n,) expected, got {f.shape} and {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("at least two classes are needed")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return f, y


def evidence(
    features: np.ndarray, target: np.ndarray, alpha: float, beta: float
) -> tuple[float, np.ndarray]:
    """Log evidence per sample of ``target (n,)`` under ``w ~ N(0, 1/alpha)``, noise precision ``beta``.

    Computed directly (``A = alpha I + beta F^T F``), for tests and small problems. Returns the
    evidence / n and the posterior mean ``m (d,)``.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ target)
    residual = float(np.sum((target - f @ m) ** 2))
    _, logdet = np.linalg.slogdet(a)
    value = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - beta / 2 * residual
        - alpha / 2 * float(m @ m)
        - logdet / 2
        - n / 2 * np.log(2 * np.pi)
    )
    return float(value / n), m


def _eigen(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition ``(sigma (d,), v (d, d))`` of ``F^T F``, shared by every target."""
    sigma, v = np.linalg.eigh(features.T @ features)
    return np.clip(sigma, 0.0, None), v


def logme_fit(
    features: np.ndarray,
    target: np.ndarray,
    max_iter: int = 11,
    tol: float = 1e-2,
    eigen: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float, float]:
    """Evidence-maximising ``(evidence / n, alpha, beta)`` for one regression target ``(n,)``.

    The eigen-decomposition of ``F^T F`` (pass ``eigen`` to reuse it across targets) makes each
    fixed-point step cost O(d).
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    sigma, v = eigen if eigen is not None else _eigen(f)
    projected = v.T @ (f.T @ target)  # (d,)
    y2 = float(target @ target)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        lam = alpha / beta
        gamma = float(np.sum(sigma / (sigma + lam)))
        m_coef = projected / (sigma + lam)  # posterior mean in the eigenbasis
        m2 = float(np.sum(m_coef**2))
        # ||y - F m||^2 = y'y - 2 m'F'y + m'F'F m, in the eigenbasis
        residual = max(y2 - 2 * float(m_coef @ projected) + float(np.sum(sigma * m_coef**2)), 1e-12)
        alpha = gamma / max(m2, 1e-12)
        beta = max(n - gamma, 1e-12) / residual
        if abs(alpha / beta - lam) / lam < tol:
            break
    lam = alpha / beta
    m_coef = projected / (sigma + lam)
    m2 = float(np.sum(m_coef**2))
    residual = max(y2 - 2 * float(m_coef @ projected) + float(np.sum(sigma * m_coef**2)), 1e-12)
    value = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - beta / 2 * residual
        - alpha / 2 * m2
        - 0.5 * float(np.sum(np.log(alpha + beta * sigma)))
        - n / 2 * np.log(2 * np.pi)
    )
    return float(value / n), float(alpha), float(beta)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME score of ``features (n, d)`` for ``labels (n,)``: mean over classes of the evidence / n."""
    f, y = _as_inputs(features, labels)
    eigen = _eigen(f)
    return float(np.mean([logme_fit(f, (y == c).astype(np.float64), eigen=eigen)[0] for c in np.unique(y)]))


def h_score(
    features: np.ndarray, labels: np.ndarray, ridge: float = 1e-6, shrinkage: float | None = None
) -> float:
    """H-score ``tr(cov(f)^-1 cov(E[f|y]))``.

    ``cov(f)`` is shrunk towards ``mu I`` (``mu`` = mean variance) by ``shrinkage`` in [0, 1]
    (None: the Ledoit-Wolf estimate), then ``ridge * mu`` is added.
    """
    f, y = _as_inputs(features, labels)
    f = f - f.mean(0, keepdims=True)
    cov_f = f.T @ f / len(f)
    mu = max(float(np.trace(cov_f)) / len(cov_f), 1e-12)
    if shrinkage is None:
        from sklearn.covariance import ledoit_wolf_shrinkage

        shrinkage = float(ledoit_wolf_shrinkage(f, assume_centered=True))
    cov_f = (1 - shrinkage) * cov_f + shrinkage * mu * np.eye(len(cov_f))
    cov_f += ridge * mu * np.eye(len(cov_f))
    # cov(E[f|y]) = sum_c w_c mu_c mu_c^T (w_c = class share), so the trace needs C solves, not d
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(0) for c in classes])  # (C, d)
    weights = np.array([np.mean(y == c) for c in classes])
    solved = np.linalg.solve(cov_f, means.T)  # (d, C)
    return float(np.sum(weights * np.einsum("cd,dc->c", means, solved)))


PROBE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _ridge_basis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(s2 (r,), u (n, r), v (d, r))`` with ``x = u diag(sqrt(s2)) v^T`` over the non-null directions, from
    the eigen-decomposition of the smaller of ``x^T x`` and ``x x^T``."""
    if x.shape[1] <= x.shape[0]:  # X = U S V^T from X^T X = V S^2 V^T
        s2, v = np.linalg.eigh(x.T @ x)
        s2 = np.clip(s2, 0.0, None)
        keep = s2 > 1e-10 * max(float(s2.max()), 1e-30)
        s2, v = s2[keep], v[:, keep]
        u = x @ v / np.sqrt(s2)
    else:  # from X X^T = U S^2 U^T
        s2, u = np.linalg.eigh(x @ x.T)
        s2 = np.clip(s2, 0.0, None)
        keep = s2 > 1e-10 * max(float(s2.max()), 1e-30)
        s2, u = s2[keep], u[:, keep]
        v = x.T @ u / np.sqrt(s2)
    return s2, u, v


def _leave_one_out(s2: np.ndarray, u: np.ndarray, target: np.ndarray,
                   alphas: tuple[float, ...]) -> tuple[float, np.ndarray]:
    """The ridge strength of ``alphas`` with the smallest leave-one-out error on the centred ``target (n, C)``
    (basis ``s2``, ``u`` of :func:`_ridge_basis`), and each image's prediction ``(n, C)`` without it, under it."""
    projected = u.T @ target  # (r, C)
    best, best_error, best_residual = alphas[0], np.inf, target
    for alpha in alphas:
        shrink = s2 / (s2 + alpha)
        fitted = u @ (shrink[:, None] * projected)
        leverage = np.clip((u**2) @ shrink + 1.0 / len(u), 0.0, 1.0 - 1e-9)  # + 1/n: the fitted intercept
        residual = (target - fitted) / (1.0 - leverage)[:, None]
        error = float(np.mean(residual**2))
        if error < best_error:
            best, best_error, best_residual = alpha, error, residual
    return best, target - best_residual


def ridge_probe_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray,
                        alphas: tuple[float, ...] = PROBE_ALPHAS) -> np.ndarray:
    """Classes predicted for ``test (m, d)`` by a ridge classifier fit on ``train (n, d)``, ``labels (n,)``.

    Least squares on +-1 one-hot targets over standardised features; the ridge strength is the one of
    ``alphas`` with the smallest leave-one-out error, which one eigen-decomposition of the smaller Gram
    matrix gives for every alpha at once.
    """
    mean, std = train.mean(0), train.std(0) + 1e-8
    x, xt = (train - mean) / std, (test - mean) / std
    classes = np.unique(labels)
    target = (labels[:, None] == classes[None, :]) * 2.0 - 1.0
    offset = target.mean(0)
    target = target - offset
    s2, u, v = _ridge_basis(x)
    projected = u.T @ target  # (r, C)
    best, _ = _leave_one_out(s2, u, target, alphas)
    coef = v @ ((np.sqrt(s2) / (s2 + best))[:, None] * projected)  # (d, C)
    return classes[np.argmax(xt @ coef + offset, axis=1)]


def loo_probe_accuracy(features: np.ndarray, labels: np.ndarray, alphas: tuple[float, ...] = PROBE_ALPHAS) -> float:
    """Leave-one-out accuracy in [0, 1] of the ridge classifier of :func:`ridge_probe_predict` on ``features (n, d)``:
    each image predicted by the classifier fit on all the others, in closed form from one decomposition
    (the ridge strength: the one of ``alphas`` with the smallest leave-one-out error). The features are
    standardised over all ``n`` images. Ten times cheaper than :func:`probe_accuracy` on a small task."""
    f, y = _as_inputs(features, labels)
    x = (f - f.mean(0)) / (f.std(0) + 1e-8)
    classes, index = np.unique(y, return_inverse=True)
    target = (index[:, None] == np.arange(len(classes))[None, :]) * 2.0 - 1.0
    target = target - target.mean(0)
    s2, u, _ = _ridge_basis(x)
    _, held_out = _leave_one_out(s2, u, target, alphas)
    return float(np.mean(np.argmax(held_out, axis=1) == index))


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 4, seed: int = 0) -> float:
    """Linear-probe accuracy in [0, 1]: ``folds``-fold cross-validated accuracy of
    :func:`ridge_probe_predict` on ``features (n, d)`` (stratified folds when every class has ``folds``
    images)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    f, y = _as_inputs(features, labels)
    if len(y) < 2 * folds:
        raise ValueError(f"a {folds}-fold probe needs at least {2 * folds} images, got {len(y)}")
    counts = np.unique(y, return_counts=True)[1]
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if counts.min() >= folds
                else KFold(folds, shuffle=True, random_state=seed))
    correct = 0
    for train, test in splitter.split(f, y):
        if len(np.unique(y[train])) < 2:  # a part with one class cannot train a classifier: it predicts that class
            correct += int(np.sum(y[test] == y[train][0]))
            continue
        correct += int(np.sum(ridge_probe_predict(f[train], y[train], f[test]) == y[test]))
    return correct / len(y)


def model_features(model, images, batch_size: int = 256):  # noqa: ANN001 - torch types, lazy import
    """Pooled features ``(n, d)`` float64 of a model with ``forward_features`` on ``images (n, 3, H, W)``."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(model.forward_features(images[start : start + batch_size]).double())
    return torch.cat(out).numpy()


#: BLAS threads of :func:`transferability_report`. A multithreaded BLAS splits its products and
#: factorisations differently for each thread count, so the scores' last bits (up to 1e-9 relative for
#: LogME, measured 2026-12-03) depended on the process's thread settings (``OMP_NUM_THREADS``, a Celery
#: worker's or a test's): one thread makes them bitwise the same in every process on a given CPU kind.
SCORING_BLAS_THREADS = 1


def transferability_report(features: np.ndarray, labels: np.ndarray, probe_folds: int = 4,
                           probe_seed: int = 0) -> dict[str, float]:
    """LogME, H-score and the ``probe_folds``-fold linear-probe accuracy of one model's target features, with
    the feature width; computed on :data:`SCORING_BLAS_THREADS` BLAS threads whatever the process's setting."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=SCORING_BLAS_THREADS, user_api="blas"):
        return {"logme": logme(features, labels), "h_score": h_score(features, labels),
                "probe": probe_accuracy(features, labels, folds=probe_folds, seed=probe_seed),
                "feature_dim": int(features.shape[1])}
