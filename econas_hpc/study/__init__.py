"""The proxy-reliability study: how well a reduced setting ranks networks (spec 8, 11).

- `metrics`: pure numbers (Spearman, tolerant Spearman, entropy rho_e, acceleration ratios,
  order flips, Pareto front, factor lines); numpy + scipy only.
- `grid`: parsing of `--settings` lists and `--grid` products into canonical setting strings.
- `figures`: the PNG/SVG plots (matplotlib, Agg canvas, imported lazily).
"""
