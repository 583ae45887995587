"""Server-rendered SVG plots for the analysis pages: no JavaScript, no CDN, and the page's own CJK font
renders the Chinese labels. Every label goes through escape(); the result is safe markup."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#2f5bea", "#e0723a", "#12805c", "#9b4dca", "#c0362c", "#0e8fa3", "#b26b00", "#667085")
FONT = 'font-family="Noto Sans CJK SC, Noto Sans SC, PingFang SC, Microsoft YaHei, sans-serif"'


def _svg(width: int, height: int, body: list[str], title: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every text below is escaped
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" {FONT} font-size="12">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def heatmap_svg(counts: list[list[int]], *, title: str) -> SafeString:
    """10x10 grid: critic score down the side (1 at the bottom), human score across; darker = more pairs."""
    cell, left, top = 30, 56, 28
    peak = max((max(row) for row in counts), default=0) or 1
    body = [f'<text x="{left}" y="16" font-weight="600">{escape(title)}</text>']
    for ci in range(10):
        for hi in range(10):
            value = counts[ci][hi]
            alpha = 0 if value == 0 else 0.08 + 0.92 * value / peak
            x, y = left + hi * cell, top + (9 - ci) * cell
            body.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                        f'fill="rgba(47,91,234,{alpha:.3f})" stroke="#e3e6ee"><title>critic {ci + 1} · human '
                        f'{hi + 1}: {value}</title></rect>')
            if value:
                colour = "#fff" if alpha > 0.55 else "#1d2330"
                body.append(f'<text x="{x + cell / 2 - 0.5}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                            f'font-size="9" fill="{colour}">{value}</text>')
        body.append(f'<text x="{left - 6}" y="{top + (9 - ci) * cell + cell / 2 + 4}" text-anchor="end">{ci + 1}</text>')
        body.append(f'<text x="{left + ci * cell + cell / 2}" y="{top + 10 * cell + 14}" text-anchor="middle">'
                    f'{ci + 1}</text>')
    body.append(f'<text x="{left + 5 * cell}" y="{top + 10 * cell + 32}" text-anchor="middle">'
                f'{escape("人工评分 Human score (mean, rounded)")}</text>')
    body.append(f'<text transform="translate(14,{top + 5 * cell}) rotate(-90)" text-anchor="middle">'
                f'{escape("评分模型 Critic score")}</text>')
    return _svg(left + 10 * cell + 10, top + 10 * cell + 42, body, title)


def bars_svg(groups: list[dict], *, series: list[str], title: str, low: float = 0.0, high: float | None = None,
             axis: str = "") -> SafeString:
    """Grouped bars with 95% interval whiskers. groups: [{"label", "values": [(value, lo, hi) | None per series]}]."""
    values = [v for g in groups for item in g["values"] if item for v in item if v is not None]
    high = high if high is not None else (max(values) * 1.1 if values else 1.0) or 1.0
    bar, gap, left, top, plot_h = 14, 18, 48, 40, 220
    width = max(left + len(groups) * (bar * len(series) + gap) + 20, left + 150 * len(series) + 20, 420)
    def y_of(v: float) -> float:
        return top + plot_h - (min(max(v, low), high) - low) / (high - low) * plot_h

    body = [f'<text x="{left}" y="16" font-weight="600">{escape(title)}</text>']
    for i, name in enumerate(series):
        body.append(f'<rect x="{left + i * 150}" y="22" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                    f'<text x="{left + i * 150 + 14}" y="31">{escape(name)}</text>')
    for k in range(5):
        v = low + (high - low) * k / 4
        body.append(f'<line x1="{left}" x2="{width - 10}" y1="{y_of(v):.1f}" y2="{y_of(v):.1f}" stroke="#e3e6ee"/>'
                    f'<text x="{left - 4}" y="{y_of(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for gi, group in enumerate(groups):
        x0 = left + gi * (bar * len(series) + gap) + gap / 2
        for si, item in enumerate(group["values"]):
            if not item or item[0] is None:
                continue
            value, lo, hi = item
            x = x0 + si * bar
            body.append(f'<rect x="{x:.1f}" y="{y_of(value):.1f}" width="{bar - 2}" '
                        f'height="{max(y_of(low) - y_of(value), 0):.1f}" fill="{PALETTE[si % len(PALETTE)]}">'
                        f'<title>{escape(group["label"])} · {escape(series[si])}: {value:.3f}</title></rect>')
            if lo is not None and hi is not None:
                cx = x + (bar - 2) / 2
                body.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y_of(lo):.1f}" y2="{y_of(hi):.1f}" '
                            f'stroke="#1d2330"/><line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{y_of(lo):.1f}" '
                            f'y2="{y_of(lo):.1f}" stroke="#1d2330"/><line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" '
                            f'y1="{y_of(hi):.1f}" y2="{y_of(hi):.1f}" stroke="#1d2330"/>')
        cx = x0 + bar * len(series) / 2
        body.append(f'<text transform="translate({cx:.1f},{top + plot_h + 10}) rotate(40)" font-size="11">'
                    f'{escape(group["label"])}</text>')
    if axis:
        body.append(f'<text transform="translate(12,{top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
                    f'{escape(axis)}</text>')
    return _svg(width, top + plot_h + 100, body, title)


def histogram_svg(series: list[dict], *, title: str) -> SafeString:
    """Score 1..10 frequencies (as shares of each series) side by side; series: [{"label", "counts"}]."""
    groups = []
    for score in range(10):
        values = []
        for s in series:
            total = sum(s["counts"]) or 1
            values.append((s["counts"][score] / total, None, None))
        groups.append({"label": str(score + 1), "values": values})
    return bars_svg(groups, series=[s["label"] for s in series], title=title, axis="占比 Share")


def win_rate_svg(models: list[str], rates: list[list[float | None]], *, title: str) -> SafeString:
    """Row model's observed win rate against the column model (ties half); blue above 50%, orange below."""
    cell, left, top = 34, 150, 28
    n = len(models)
    body = [f'<text x="{left}" y="16" font-weight="600">{escape(title)}</text>']
    for r, row in enumerate(rates):
        body.append(f'<text x="{left - 6}" y="{top + r * cell + cell / 2 + 4}" text-anchor="end">'
                    f'{escape(models[r][:22])}</text>')
        for c, value in enumerate(row):
            x, y = left + c * cell, top + r * cell
            if value is None or r == c:
                fill, label = "#f4f5f8", "—" if r != c else ""
            else:
                strength = min(1.0, abs(value - 0.5) * 2)
                colour = "47,91,234" if value >= 0.5 else "224,114,58"
                fill, label = f"rgba({colour},{0.08 + 0.8 * strength:.3f})", f"{value * 100:.0f}"
            tip = f"{models[r]} vs {models[c]}: " + ("no votes" if value is None else f"{value * 100:.1f}%")
            body.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{fill}" '
                        f'stroke="#e3e6ee"><title>{escape(tip)}</title></rect>')
            if label:
                body.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                            f'font-size="10">{escape(label)}</text>')
    for c in range(n):
        x = left + c * cell + cell / 2
        body.append(f'<text transform="translate({x + 4},{top + n * cell + 6}) rotate(60)" font-size="10">'
                    f'{escape(models[c][:22])}</text>')
    return _svg(left + n * cell + 20, top + n * cell + 130, body, title)
