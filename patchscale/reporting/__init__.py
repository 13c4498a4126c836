"""Statistics in, text and pictures out: the fit table, figures, the HTML report, the data preview.

`patchscale plot`, `patchscale report` and `patchscale data preview`, and the table that
`patchscale fit` prints; the numbers come from patchscale.analysis.
"""
