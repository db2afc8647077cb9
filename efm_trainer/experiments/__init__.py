"""``efm experiment``: the paper's claims reproduced in simulation (scaling, pretraining, over-optimisation).

Each experiment is a directory of arms. An arm is one training run and its ground-truth evaluation on one
fixed set of held-out scenes; it is written to ``arms/<arm>/`` and counts as finished once its
``result.json`` exists, so a killed experiment resumes without redoing finished arms. The experiment's
``report/`` holds a plot per claim, ``report.md`` (tables, the exact command, the configuration) and
``results.csv`` (one row per evaluation episode of every arm).
"""
