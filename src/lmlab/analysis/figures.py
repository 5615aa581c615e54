"""PNG figures of the analyses (matplotlib, no display needed)."""
from __future__ import annotations


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return str(path)


def heatmap(matrix, labels, path, title: str, xlabel: str = "reader", ylabel: str = "writer") -> str:
    plt = _plt()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(min(2 + 0.28 * n, 16), min(1.6 + 0.28 * n, 15)))
    im = ax.imshow(matrix, cmap="viridis", vmin=0)
    step = max(1, n // 40)
    ax.set_xticks(range(0, n, step), labels[::step], rotation=90, fontsize=6)
    ax.set_yticks(range(0, n, step), labels[::step], fontsize=6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)


def spectra(values, labels, path, title: str) -> str:
    """Singular values per head (one line each), normalised by the head's largest."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for row, label in zip(values, labels):
        ax.plot(range(1, len(row) + 1), [v / max(row[0], 1e-30) for v in row], alpha=0.6, lw=1, label=label)
    ax.set_xlabel("singular value index")
    ax.set_ylabel("sigma_i / sigma_1")
    ax.set_yscale("log")
    ax.set_title(title)
    if len(labels) <= 12:
        ax.legend(fontsize=6)
    return _save(fig, path)


def patterns(pattern, tokens, path, title: str) -> str:
    """One panel per head of an attention pattern [H, T, T]."""
    plt = _plt()
    H = len(pattern)
    cols = min(H, 4)
    rows = (H + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    short = [t if len(t) <= 6 else t[:5] + "…" for t in (repr(t)[1:-1] for t in tokens)]
    step = max(1, len(tokens) // 24)
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        ax.imshow(pattern[h], cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"head {h}", fontsize=8)
        ax.set_xticks(range(0, len(tokens), step), short[::step], rotation=90, fontsize=5)
        ax.set_yticks(range(0, len(tokens), step), short[::step], fontsize=5)
    fig.suptitle(title)
    return _save(fig, path)


def lens_curves(lens: dict, path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, label in zip(axes, ("bpb", "kl_to_last_bits", "top1_agreement"),
                              ("bits per byte", "KL(last || state), bits/token", "top-1 agreement with last")):
        ax.plot(lens["states"], lens[key], marker="o", label="logit lens")
        if "tuned" in lens:
            ax.plot(lens["states"], lens["tuned"][key], marker="s", label="tuned lens")
            ax.legend(fontsize=8)
        ax.set_xlabel("state (blocks passed)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def trajectory_path(traj: dict, path, position: int = -1) -> str:
    """Every position's path through the 2-D PCA of the states; `position`'s path highlighted."""
    plt = _plt()
    pts = traj["pca"]                                    # [S, T, 2]
    T = len(pts[0])
    fig, ax = plt.subplots(figsize=(6, 5))
    for t in range(T):
        xs, ys = [s[t][0] for s in pts], [s[t][1] for s in pts]
        ax.plot(xs, ys, color="0.8", lw=0.6)
    t = position % T
    xs, ys = [s[t][0] for s in pts], [s[t][1] for s in pts]
    ax.plot(xs, ys, marker="o", color="C3", lw=1.5)
    for k, (x, y) in enumerate(zip(xs, ys)):
        ax.annotate(str(k), (x, y), fontsize=7)
    share = traj["pca_variance_share"]
    ax.set_xlabel(f"PC1 ({share[0]:.0%})")
    ax.set_ylabel(f"PC2 ({share[1]:.0%})" if len(share) > 1 else "PC2")
    ax.set_title(f"states of token {t} ({traj['tokens'][t]!r}), numbered by blocks passed", fontsize=9)
    return _save(fig, path)


def sink_shares(stats: dict, path) -> str:
    plt = _plt()
    heads = stats["heads"]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(heads)), 3.4))
    ax.bar(range(len(heads)), [h["sink_share"] for h in heads])
    step = max(1, len(heads) // 48)
    ax.set_xticks(range(0, len(heads), step), [h["head"] for h in heads][::step], rotation=90, fontsize=6)
    ax.set_ylabel("attention to position 0")
    ax.set_ylim(0, 1)
    return _save(fig, path)


def key_cosines(keys: dict, path) -> str:
    """Cosine of each rank's key to the top-1 key (binned), real and shuffled vocabulary; and
    where the correct token ranks."""
    plt = _plt()
    labels = [f"{lo}" if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in keys["bins"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    x = range(len(labels))
    axes[0].plot(x, keys["cos_to_top1"], marker="o", label="model's keys")
    axes[0].plot(x, keys["cos_to_top1_shuffled"], marker="s", ls="--", label="shuffled vocabulary")
    axes[0].set_ylabel("cosine to the top-1 key")
    axes[1].bar(range(len(labels) + 1), keys["correct_rank_by_bin"])
    axes[1].set_ylabel("share of correct next tokens")
    for ax, ticks in ((axes[0], labels), (axes[1], ["0"] + labels)):
        ax.set_xticks(range(len(ticks)), ticks, rotation=45, fontsize=7)
        ax.set_xlabel("rank (0 = top-1)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def laundry_sweep(result: dict, path) -> str:
    """Test accuracy against the scale of the channel (and of the random control), and by list length."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    sweep = [{"scale": 1.0, "test": result["test"]["accuracy"], "control_test_mean": result["test"]["accuracy"]}]
    sweep = sorted(sweep + result["sweep"], key=lambda r: r["scale"])
    axes[0].plot([r["scale"] for r in sweep], [r["test"] for r in sweep], marker="o", label="identified component")
    axes[0].plot([r["scale"] for r in sweep], [r["control_test_mean"] for r in sweep], marker="s", ls="--",
                 label="random direction (mean)")
    axes[0].set_xlabel(f"scale of {result['writer']}'s component (writer into mover {result['mover']})")
    axes[0].set_ylabel("test accuracy")
    for label, rows in (("plain model", result["test"].get("by_length") or []),
                        (f"scale {result['chosen_scale']:g}", result["test_by_length_at_chosen"] or [])):
        axes[1].plot([r["length"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=label)
    axes[1].set_xlabel("list length")
    axes[1].set_ylabel("test accuracy")
    for ax in axes:
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
