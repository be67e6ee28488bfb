"""Reference statistics for tests/stats_reference.rs, from scipy and statsmodels.

Reads {"wilson": [[k, n], ...], "mcnemar": [[b, c], ...], "t": [[values...], ...],
"mde": [[sd, n], ...]} on stdin
and prints the same structure with the reference results."""
import json
import sys

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint

q = json.load(sys.stdin)
out = {
    "wilson": [list(proportion_confint(k, n, alpha=0.05, method="wilson")) for k, n in q["wilson"]],
    # McNemar on the 2x2 table [[both, only A], [only B, neither]]; only b and c matter.
    "mcnemar": [float(mcnemar([[10, b], [c, 7]], exact=True).pvalue) for b, c in q["mcnemar"]],
    # One-sample (paired) z-test: ratio=0; the effect size in sd units, times the sd.
    "mde": [
        NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=0.05, power=0.8, ratio=0) * sd
        for sd, n in q["mde"]
    ],
    "t": [
        list(stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v)))
        for v in q["t"]
    ],
}
print(json.dumps(out))
