"""Load scenarios as data: testcases/load/scenarios.yaml, checked against its schema.

Each scenario becomes a ``Case`` (id ``LOAD-<NAME>``) whose steps are catalogue steps, so a
sampled iteration goes through ``engine.Runner`` exactly like a catalogue case. A mix is a
set of weights over the other scenarios; one of them is picked per iteration.
"""

from __future__ import annotations

import fnmatch
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from conformance.catalogue.cases import Case, Step, catalogue_dir
from conformance.checks import REGISTRY

DEFAULT_SCENARIO = "provision"


class ScenarioError(ValueError):
    """A scenario file or name that cannot be used (one line, exit 2)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    case: Case | None  # None for a mix
    mix: Mapping[str, float]

    @property
    def case_id(self) -> str:
        return "LOAD-" + self.name.upper()


@dataclass(frozen=True)
class Plan:
    """What each iteration of a virtual UE runs: one scenario, or one drawn from a mix."""

    chosen: Scenario
    members: tuple[Scenario, ...]
    weights: tuple[float, ...]

    def pick(self, rng: random.Random) -> Scenario:
        if len(self.members) == 1:
            return self.members[0]
        return rng.choices(self.members, weights=self.weights)[0]


def scenarios_file() -> Path:
    return catalogue_dir() / "load" / "scenarios.yaml"


def load_scenarios(path: Path | None = None) -> dict[str, Scenario]:
    path = path or scenarios_file()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        schema = json.loads((path.parent / "scenario-schema.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"{path}: unreadable ({type(exc).__name__})") from None
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(document),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        error = jsonschema.exceptions.best_match(errors) or errors[0]
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise ScenarioError(f"{path}: {where}: {' '.join(error.message.split())[:200]}")
    found: dict[str, Scenario] = {}
    for raw in document["scenarios"]:
        name = raw["name"]
        if name in found:
            raise ScenarioError(f"{path}: scenario {name!r} is defined twice")
        found[name] = _scenario(path, raw)
    for scenario in found.values():
        for member in scenario.mix:
            if member not in found or found[member].case is None:
                raise ScenarioError(
                    f"{path}: mix {scenario.name!r} names {member!r}, which is not a "
                    "scenario with steps"
                )
    return found


def plan_for(name: str, scenarios: Mapping[str, Scenario]) -> Plan:
    scenario = scenarios.get(name)
    if scenario is None:
        raise ScenarioError(f"no scenario {name!r} (known: {', '.join(sorted(scenarios))})")
    if scenario.case is not None:
        return Plan(scenario, (scenario,), (1.0,))
    members = tuple(scenarios[m] for m in scenario.mix)
    return Plan(scenario, members, tuple(float(w) for w in scenario.mix.values()))


def _scenario(path: Path, raw: Mapping[str, Any]) -> Scenario:
    name = str(raw["name"])
    if "mix" in raw:
        return Scenario(name, str(raw["title"]), None, dict(raw["mix"]))
    steps = []
    labels: set[str] = set()
    for spec in raw["steps"]:
        label = str(spec["label"])
        if label in labels:
            raise ScenarioError(f"{path}: scenario {name}: step label {label!r} is used twice")
        labels.add(label)
        expect = spec.get("expect", {})
        steps.append(
            Step(
                label=label,
                request=str(spec["request"]),
                spec=dict(spec),
                expect_status=(int(expect.get("status", 200)),),
                expect_message=expect.get("message"),
                checks=_expand_checks(path, name, spec.get("checks", [])),
            )
        )
    case = Case(
        id="LOAD-" + name.upper(),
        title=str(raw["title"]),
        area="load",
        reqs=tuple(raw.get("reqs", ())),
        clause=str(raw.get("clause", "")),
        strength="shall",
        inferred=False,
        pics="true",
        needs=(),
        purpose="",
        steps=tuple(steps),
        file=path,
        line=0,
    )
    return Scenario(name, str(raw["title"]), case, {})


def _expand_checks(path: Path, scenario: str, names: Sequence[str]) -> tuple[str, ...]:
    expanded: list[str] = []
    for name in names:
        if any(ch in name for ch in "*?["):
            matches = [n for n in REGISTRY if fnmatch.fnmatchcase(n, name)]
        else:
            matches = [name] if name in REGISTRY else []
        if not matches:
            raise ScenarioError(f"{path}: scenario {scenario}: no check is named {name!r}")
        expanded.extend(m for m in matches if m not in expanded)
    return tuple(expanded)
