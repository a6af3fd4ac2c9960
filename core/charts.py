"""Charts rendered server-side as PNGs (matplotlib, Agg): no script library, nothing from a CDN."""

import io


def _figure(width=6.4, height=3.0):
    # Imported on the first chart: matplotlib costs a web process 1.0 s and 63 MB (measured), charts are rare.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return plt, fig, ax


def _png(plt, fig):
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def distribution_png(histogram, title):
    """Share of predictions per P(pneumonia) bin, in use beside validation."""
    plt, fig, ax = _figure()
    edges, live, reference = histogram["edges"], histogram["counts"], histogram.get("validation_counts")
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    width = (edges[1] - edges[0]) * 0.4

    def shares(counts):
        total = sum(counts) or 1
        return [c / total for c in counts]

    ax.bar([c - width / 2 for c in centres], shares(live), width=width, label=f"in use (n={sum(live)})",
           color="#c2410c")
    if reference:
        ax.bar([c + width / 2 for c in centres], shares(reference), width=width,
               label=f"validation (n={sum(reference)})", color="#64748b")
    ax.set(xlabel="P(pneumonia)", ylabel="share of predictions", xlim=(0, 1), title=title)
    ax.legend(loc="upper center", fontsize=8)
    return _png(plt, fig)


def trend_png(points, title):
    """P(pneumonia) of a patient's studies over time, with each study's operating threshold.

    ``points``: (datetime, probability, threshold, label) in time order.
    """
    plt, fig, ax = _figure(height=2.8)
    if points:
        when = [p[0] for p in points]
        ax.plot(when, [p[1] for p in points], marker="o", color="#c2410c", label="P(pneumonia)")
        ax.step(when, [p[2] for p in points], where="post", linestyle="--", color="#334155",
                label="operating threshold")
        for moment, probability, _, label in points:
            ax.annotate(label[:1], (moment, probability), textcoords="offset points", xytext=(0, 6), ha="center",
                        fontsize=7)
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "No finished prediction yet", ha="center", va="center", transform=ax.transAxes)
    ax.set(ylim=(0, 1.05), ylabel="P(pneumonia)", title=title)
    ax.legend(loc="lower left", fontsize=8)
    return _png(plt, fig)
