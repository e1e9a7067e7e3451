"""The sweep spec: validation names the field, ranges expand, searches draw the right points."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from trainforge.dataflow.sweep.evaluators import EVALUATORS, evaluator, get_evaluator
from trainforge.dataflow.sweep.search import GridSearcher, NsgaSearcher, RandomSearcher
from trainforge.dataflow.sweep.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]


def _spec(**changes):
    base = {
        "name": "t",
        "evaluator": "mcu",
        "workloads": ["dscnn"],
        "parameters": {"cores": [2, 4], "l1_banks": {"pow2": [8, 32]}},
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"worklods": ["dscnn"]}, "worklods: unknown field (did you mean 'workloads'?)"),
        ({"parameters": {"l1_bank": [8]}}, "parameters.l1_bank: not a parameter of evaluator 'mcu'"),
        ({"parameters": {"l1_banks": [8, 12]}}, "parameters.l1_banks: l1_banks must be a power of two"),
        ({"parameters": {"cores": [2, 64]}}, "parameters.cores: cores must be an integer in 1..32"),
        ({"parameters": {"cores": []}}, "parameters.cores"),
        ({"parameters": {"cores": {"range": [8, 2]}}}, "parameters.cores"),
        ({"parameters": {"cores": [2, 2]}}, "parameters.cores: repeats a value"),
        ({"fixed": {"dtype": "fp8"}}, "fixed.dtype: dtype must be one of"),
        ({"fixed": {"cores": 4}}, "fixed.cores: is also swept"),
        ({"evaluator": "sat-nope"}, "evaluator: unknown evaluator 'sat-nope'"),
        ({"workloads": ["resnet9"]}, "workloads.0: unknown workload 'resnet9'"),
        ({"methods": ["bdwpp"]}, "methods.0"),
        ({"objectives": ["latency"]}, "objectives.0: 'latency' is not an objective of 'mcu' (did you mean"),
        ({"search": {"kind": "nsga2", "trails": 10}}, "search.nsga2.trails: unknown field"),
        ({"search": {"kind": "nsga2", "trials": 10}, "objectives": ["latency_ms"]}, "objectives: NSGA-II needs"),
        ({"search": {"kind": "anneal"}}, "search"),
        ({"area": True}, "area: evaluator 'mcu' has no area hook"),
        ({"name": "has space"}, "name"),
    ],
)
def test_errors_name_the_field(changes, field):
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(**changes), origin="S.yaml")
    message = str(info.value)
    assert message.startswith("S.yaml: ")
    assert field in message, message


def test_yaml_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot read sweep spec"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SpecError, match="a mapping of fields"):
        load_spec(bad)


def test_ranges_expand():
    spec = parse_spec(
        _spec(parameters={"cores": {"range": [1, 7], "step": 3}, "l1_banks": {"pow2": [4, 64]}, "dtype": ["fp16"]})
    )
    assert spec.choices() == {"cores": [1, 4, 7], "l1_banks": [4, 8, 16, 32, 64], "dtype": ["fp16"]}
    assert spec.grid_size() == 1 * 1 * 3 * 5 * 1


def test_examples_are_valid():
    quick = load_spec(ROOT / "examples/sweeps/quick.yaml")
    assert quick.grid_size() <= 200
    large = load_spec(ROOT / "examples/sweeps/mcu-tradeoff.yaml")
    assert large.grid_size() > quick.grid_size()


def test_grid_visits_every_combination_once():
    spec = parse_spec(_spec(workloads=["dscnn", "resnet8"], methods=["dense", "bdwp"], fixed={"dtype": "fp16"}))
    (batch,) = list(GridSearcher(spec).batches())
    seen = {(p.workload, p.method, p.config) for p in batch}
    expected = {
        (w, m, tuple(sorted({"cores": c, "l1_banks": b, "dtype": "fp16"}.items())))
        for w, m, c, b in itertools.product(["dscnn", "resnet8"], ["dense", "bdwp"], [2, 4], [8, 16, 32])
    }
    assert seen == expected
    assert len({p.key for p in batch}) == len(batch) == spec.grid_size()


def test_point_keys_are_stable_and_depend_on_what_is_computed():
    spec = parse_spec(_spec())
    keys = [p.key for b in GridSearcher(spec).batches() for p in b]
    assert keys == [p.key for b in GridSearcher(parse_spec(_spec())).batches() for p in b]
    # the spec's name, search or objectives do not change a point; a fixed value does
    renamed = parse_spec(_spec(name="other", objectives=["cycles", "fpus"]))
    assert keys == [p.key for b in GridSearcher(renamed).batches() for p in b]
    fixed = parse_spec(_spec(fixed={"dtype": "fp32"}))
    assert not set(keys) & {p.key for b in GridSearcher(fixed).batches() for p in b}


def test_random_is_a_seeded_sample_without_repeats():
    spec = parse_spec(
        _spec(parameters={"cores": {"range": [1, 32]}, "l1_banks": {"pow2": [1, 256]}}, search={"kind": "random"})
        | {"search": {"kind": "random", "samples": 50, "seed": 3}}
    )
    grid = {p.key for b in GridSearcher(spec).batches() for p in b}
    first = [p.key for b in RandomSearcher(spec).batches() for p in b]
    assert len(first) == len(set(first)) == 50
    assert set(first) <= grid
    assert first == [p.key for b in RandomSearcher(spec).batches() for p in b]
    reseeded = parse_spec(spec.model_dump() | {"search": {"kind": "random", "samples": 50, "seed": 4}})
    assert set(first) != {p.key for b in RandomSearcher(reseeded).batches() for p in b}
    everything = parse_spec(spec.model_dump() | {"search": {"kind": "random", "samples": 10_000}})
    assert {p.key for b in RandomSearcher(everything).batches() for p in b} == grid


@pytest.fixture
def toy_evaluator():
    """A registered evaluator with an explicit formula: the registry takes one function."""

    @evaluator(
        "toy-sweep-spec",
        version="1",
        parameters=("x", "y"),
        objectives={"f1": "min", "f2": "min"},
        prepare=lambda workload, method: workload,
    )
    def toy(config, workload, method):
        return {"f1": config["x"] ** 2 + config["y"], "f2": (config["x"] - 4) ** 2 + 10 - config["y"]}

    yield get_evaluator("toy-sweep-spec")
    del EVALUATORS["toy-sweep-spec"]


def test_registry_takes_one_function(toy_evaluator):
    assert toy_evaluator.evaluate({"x": 3, "y": 1}, "w", "dense") == {"f1": 10.0, "f2": 10.0}
    with pytest.raises(ValueError, match="already registered"):
        evaluator("toy-sweep-spec", version="1", parameters=(), objectives={})(lambda c, w, m: {})
    spec = parse_spec(
        {"name": "toy", "evaluator": "toy-sweep-spec", "workloads": ["dscnn"], "parameters": {"x": [1], "y": [2]}}
    )
    assert spec.pareto_objectives() == ["f1", "f2"]


def test_nsga2_asks_populations_and_is_deterministic(toy_evaluator):
    raw = {
        "name": "toy",
        "evaluator": "toy-sweep-spec",
        "workloads": ["dscnn"],
        "parameters": {"x": {"range": [0, 8]}, "y": {"range": [0, 10]}},
        "search": {"kind": "nsga2", "trials": 30, "population": 10, "seed": 7},
    }

    def run():
        searcher = NsgaSearcher(parse_spec(raw))
        visited = []
        for batch in searcher.batches():
            assert len(batch) == 10
            visited += [p.config for p in batch]
            searcher.tell(batch, {p.key: toy_evaluator.evaluate(p.config_dict, "w", "dense") for p in batch})
        return visited

    first = run()
    assert len(first) == 30
    assert first == run()
    assert all(0 <= dict(c)["x"] <= 8 and 0 <= dict(c)["y"] <= 10 for c in first)
