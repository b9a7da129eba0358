"""The case catalogue: the YAML cases, the requirement table and the waivers.

cases.py loads and checks testcases/*.yaml (shipped in a wheel as conformance._catalogue)
and decides PICS, requirements.py reads testcases/requirements.yaml, waivers.py a run's
waiver file. It stands above the checks because it validates the check names its cases
give. May import: the stages up to checks.
"""
