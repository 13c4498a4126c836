"""Results in, statistics out: reading a sweep's runs, the scaling laws, convergence and p*(C).

Everything `patchscale fit` computes; JSON-able outputs, no figures or tables. Never imports
patchscale.reporting (or matplotlib), so a fit runs where nothing can draw.
"""
