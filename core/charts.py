"""Charts rendered server-side as PNGs (matplotlib, Agg): no script library, nothing from a CDN."""

import io
from xml.sax.saxutils import escape


def _figure(width=6.4, height=3.0):
    # Imported on the first chart: matplotlib costs a web process 1.0 s and 63 MB, charts are rare (measured:
    # time.perf_counter and resource.getrusage(...).ru_maxrss around `import matplotlib.pyplot`, fresh interpreter).
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


def trend_svg(points, title):
    """P(pneumonia) of a patient's studies over time, with each study's threshold, as an accessible SVG.

    ``points``: (datetime, probability, threshold, label) in time order. Studies are spaced evenly in
    their order (two on the same minute no longer zig-zag), dated underneath; each point has a
    title (shown on hover, read by screen readers). Scales with its container (viewBox); drawn with
    presentation attributes only, so the Content-Security-Policy (no inline style) holds inline.
    """
    width, height, left, right, top, bottom = 640, 260, 44, 12, 30, 46
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i):
        return left + (plot_w * (i + 0.5) / len(points) if points else plot_w / 2)

    def y(p):
        return top + plot_h * (1 - p)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'aria-labelledby="trend-title trend-desc" class="trend-chart" data-testid="patient-trend">',
           f'<title id="trend-title">{escape(title)}</title>',
           f'<desc id="trend-desc">P(pneumonia) of {len(points)} finished studies in time order, '
           'with the screening threshold of each.</desc>']
    # Text is sized for a phone: the drawing scales down to ~350 px there, so 15 units read as ~8 px.
    for tick in (0, 0.25, 0.5, 0.75, 1):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e2e8f0"/>'
                   f'<text x="{left - 6}" y="{y(tick) + 5:.1f}" font-size="15" text-anchor="end" fill="#475569">'
                   f'{tick:.0%}</text>')
    if not points:
        out.append(f'<text x="{width / 2}" y="{top + plot_h / 2}" text-anchor="middle" font-size="14" '
                   'fill="#475569">No finished prediction yet</text>')
    else:
        threshold = " ".join(f"{x(i) - plot_w / len(points) / 2:.1f},{y(t):.1f} {x(i) + plot_w / len(points) / 2:.1f},"
                             f"{y(t):.1f}" for i, (_, _, t, _) in enumerate(points))
        out.append(f'<polyline points="{threshold}" fill="none" stroke="#334155" stroke-dasharray="5 4"/>')
        line = " ".join(f"{x(i):.1f},{y(p):.1f}" for i, (_, p, _, _) in enumerate(points))
        out.append(f'<polyline points="{line}" fill="none" stroke="#c2410c" stroke-width="2"/>')
        every = max(1, -(-len(points) // 5))  # at most 5 labels at this size: they never overlap
        days = [moment.date() for moment, _, _, _ in points]
        for i, (moment, probability, threshold_i, label) in enumerate(points):
            colour = "#b91c1c" if label == "PNEUMONIA" else "#15803d"
            tip = f"{moment:%Y-%m-%d %H:%M} · P(pneumonia) {probability:.1%} · {label} (threshold {threshold_i:.1%})"
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(probability):.1f}" r="9" fill="{colour}">'
                       f"<title>{escape(tip)}</title></circle>"
                       # The marker the caption promises: P (PNEUMONIA) or N (NORMAL), in the dot.
                       f'<text x="{x(i):.1f}" y="{y(probability) + 4.5:.1f}" font-size="12" font-weight="700" '
                       f'text-anchor="middle" fill="#fff" aria-hidden="true">{"P" if label == "PNEUMONIA" else "N"}</text>')
            if i % every == 0:
                # A day with several studies shows the time: "2026-12-07" three times says nothing.
                text = f"{moment:%m-%d %H:%M}" if days.count(days[i]) > 1 else f"{moment:%Y-%m-%d}"
                out.append(f'<text x="{x(i):.1f}" y="{height - bottom + 20}" font-size="15" text-anchor="middle" '
                           f'fill="#475569">{text}</text>')
    out.append(f'<text x="{left}" y="{top - 10}" font-size="15" fill="#c2410c">— P(pneumonia)</text>'
               f'<text x="{left + 150}" y="{top - 10}" font-size="15" fill="#334155">- - screening threshold</text>')
    out.append("</svg>")
    return "".join(out)
