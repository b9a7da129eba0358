"""The verdict vocabulary and what a run records (DESIGN.md sections 3, 5 and 6).

outcomes.py: check outcomes, strengths, case verdicts and how a case folds its check
results into one verdict; results.py: the in-memory run (RunResult, CaseResult,
StepRecord) every reporter writes out. It sits low, below the checks, because the checks
produce these values. May import: core.
"""
