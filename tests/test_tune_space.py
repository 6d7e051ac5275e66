"""The [tune] section and what the search makes of it: strict validation, the default space,
trial settings as --set overrides, the chosen profile, the Pareto front and the verdicts."""

from __future__ import annotations

import pytest
from edgepack.errors import BudgetError, ProfileError
from edgepack.profiles.loader import load_profile
from edgepack.tune import report, space


def _profile(tmp_path, body: str, base: str = "rpi4"):
    path = tmp_path / "p.toml"
    path.write_text(f'extends = "{base}"\nname = "p"\n{body}')
    return load_profile(str(path))


@pytest.mark.parametrize("body, message", [
    ('[tune.space]\n"budgets.max_latency_ms" = [1.0, 2.0]\n', "the budgets are the search's constraints"),
    ('[tune.space]\n"pruning.ratoi" = [0.1]\n', "not a tunable profile field"),
    ('[tune.space]\n"hardware.cores" = [1, 2]\n', "not a tunable profile field"),
    ('[tune.space]\n"quantization.calibration" = ["minmax", "kl"]\n', "'kl' is not allowed; choose one of"),
    ('[tune]\nstages = 0\n[tune.space]\n"pruning.ratio" = {low = 0.1, high = 0.95}\n', "high 0.95 is above this target's pruning.max_ratio 0.7"),
    ('[tune]\nstages = 0\n[tune.space]\n"pruning.ratio" = {low = 0.5, high = 0.2}\n', "low 0.5 is not below high 0.2"),
    ('[tune.space]\n"pruning.importance" = {low = 1, high = 2}\n', "needs a numeric field"),
    ('[tune.space]\n"runtime.threads" = [1, 8]\n', "8 threads on a 4-core device"),
    ('[tune.space]\n"runtime.formats" = [["tflite"]]\n', "use [tune] deploy"),
    ('[tune.space]\n', "is empty"),
    ('[tune]\nstages = 3\n[tune.space]\n"pruning.ratio" = {low = 0.1, high = 0.5}\n', "contradicts [tune] stages"),
    ('[tune]\nobjectives = []\n', "at least one objective"),
    ('[tune]\nobjectives = ["accuracy", "speed"]\n', "'speed' is not allowed"),
])
def test_a_bad_tune_section_is_one_line_naming_the_key(tmp_path, body, message):
    with pytest.raises(ProfileError) as e:
        _profile(tmp_path, body)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert str(e.value).startswith(str(tmp_path / "p.toml"))


def test_pte_deploy_needs_an_executorch_target(tmp_path):
    with pytest.raises(ProfileError, match="'pte' needs an application-processor target"):
        _profile(tmp_path, '[tune]\ndeploy = ["tflite", "pte"]\n', base="cortex-m4")


def test_default_space_fits_the_target(tmp_path):
    shipped = load_profile("rpi4")
    rpi4 = {d.key: d for d in space.dimensions(shipped, [["a"], ["b"], ["c"]])}
    ceiling = space.ratio_ceiling(shipped.pruning.max_ratio)
    assert shipped.tune.stages == 3 and "pruning.ratio" not in rpi4  # a ratio per stage instead
    assert [(rpi4[f"stage.{i}"].high, rpi4[f"stage.{i}"].step) for i in range(3)] == [(ceiling, 0.05)] * 3
    assert rpi4["runtime.threads"].choices == (1, 2, 4)  # the Pi has 4 cores
    assert set(rpi4["quantization.calibration"].choices) == {"minmax", "percentile", "mse"}
    uniform = {d.key: d for d in space.dimensions(_profile(tmp_path, "[tune]\nstages = 0\n"))}
    assert (uniform["pruning.ratio"].low, uniform["pruning.ratio"].high, uniform["pruning.ratio"].step) == (0.0, ceiling, 0.05)
    m4 = {d.key for d in space.dimensions(load_profile("cortex-m4"), [["a"], ["b"]])}
    assert "runtime.threads" not in m4 and {"stage.0", "stage.1", "pruning.importance"} <= m4
    assert space.ratio_ceiling(0.72) == 0.7 and space.ratio_ceiling(0.7) == 0.7


def test_a_local_target_searches_no_more_threads_than_this_machine_has(monkeypatch):
    from edgepack.measure import bench

    x86 = load_profile("x86-64")  # a 4-core box, and this machine is the device
    for cpus, choices in ((2, (1, 2)), (1, None), (8, (1, 2, 4))):
        monkeypatch.setattr(bench, "host_cores", lambda cpus=cpus: cpus)
        got = {d.key: d for d in space.dimensions(x86, [["a"]])}.get("runtime.threads")
        assert (got.choices if got else None) == choices
    monkeypatch.setattr(bench, "host_cores", lambda: 2)
    dims = space.dimensions(x86, [["a"]])
    assert {p["runtime.threads"] for p in space.warm_points(x86, dims)} == {2}  # its 4 threads, as benched here
    monkeypatch.setattr(bench, "host_cores", lambda: 1)
    assert {d.key: d for d in space.dimensions(load_profile("rpi4"), [["a"]])}["runtime.threads"].choices == (1, 2, 4)


def test_a_new_study_starts_from_the_targets_own_recipe(tmp_path):
    shipped = load_profile("rpi4")
    dims = space.dimensions(shipped, [["a"], ["b"], ["c"]])
    points = space.warm_points(shipped, dims)
    # the profile's ratio (0.3) and the uniform sweep up to max_ratio (0.7), on every stage alike
    assert [[p[f"stage.{i}"] for i in range(3)] for p in points] == [[0.3] * 3, [0.5] * 3, [0.7] * 3]
    for p in points:
        assert p["pruning.importance"] == shipped.pruning.importance
        assert p["pruning.recovery_epochs"] == shipped.pruning.recovery_epochs
        assert p["runtime.threads"] == shipped.runtime.threads
        assert p["quantization.calibration"] == shipped.quantization.calibration
    # a field whose profile value lies outside the searched choices is left to the sampler
    narrow = _profile(tmp_path, '[tune]\nstages = 0\n[tune.space]\n"pruning.importance" = ["taylor"]\n'
                                '"pruning.ratio" = {low = 0.0, high = 0.7, step = 0.05}\n')
    got = space.warm_points(narrow, space.dimensions(narrow))
    assert got == [{"pruning.ratio": 0.3}, {"pruning.ratio": 0.5}, {"pruning.ratio": 0.7}]
    # a ratio the space does not hold is not a warm-start point
    listed = _profile(tmp_path, '[tune]\nstages = 0\n[tune.space]\n"pruning.ratio" = [0.3, 0.4]\n')
    assert space.warm_points(listed, space.dimensions(listed)) == [{"pruning.ratio": 0.3}]
    # the sweep stops at max_ratio; the profile's own ratio is always one of the points
    low = _profile(tmp_path, '[pruning]\nratio = 0.2\nmax_ratio = 0.55\n[tune]\nstages = 0\n')
    assert [p["pruning.ratio"] for p in space.warm_points(low, space.dimensions(low))] == [0.2, 0.3, 0.5]


def test_trial_settings_are_overrides_the_loader_accepts_and_the_chosen_profile_reproduces(tmp_path):
    target = _profile(tmp_path, '[tune]\nstages = 2\ndeploy = ["tflite", "pte"]\n'
                                '[tune.space]\n"quantization.calibration" = ["minmax", "mse"]\n'
                                '"pruning.recovery_epochs" = {low = 2, high = 8}\n')
    stages = [["stem.0", "features.0.block.0.0"], ["features.3.block.2.0"]]
    dims = space.dimensions(target, stages)
    assert [d.key for d in dims] == ["pruning.recovery_epochs", "quantization.calibration", "stage.0", "stage.1", "deploy"]
    assert next(d for d in dims if d.key == "pruning.recovery_epochs").integer
    fields = space.settings({"pruning.recovery_epochs": 3, "quantization.calibration": "mse", "stage.0": 0.35,
                             "stage.1": 0.0, "deploy": "pte"}, stages)
    assert fields["pruning.layer_ratios"] == {"features.0.block.0.0": 0.35, "stem.0": 0.35}
    assert fields["pruning.scope"] == "sensitivity" and fields["pruning.ratio"] == 0.0  # the profile's scope
    assert space.settings({"stage.0": 0.35}, stages, scope="global")["pruning.scope"] == "uniform"
    assert fields["runtime.formats"] == ["tflite", "pte"]
    via_set = load_profile(target.source, space.overrides(fields))
    assert via_set.pruning.layer_ratios == (("features.0.block.0.0", 0.35), ("stem.0", 0.35))
    assert via_set.quantization.calibration == "mse" and via_set.pruning.recovery_epochs == 3
    chosen = tmp_path / "chosen.toml"
    chosen.write_text(space.profile_text(target.source, target.name, fields, "trial 7\nof a study"))
    from_file = load_profile(str(chosen))
    assert from_file.to_dict() == {**via_set.to_dict(), "extends": target.source}


def _row(n, acc, lat, *, met=True, energy=1.0, size=50.0):
    budgets = [{"budget": "max_accuracy_drop", "value": 0.2, "limit": 1.5, "unit": "points", "basis": "v", "met": True},
               {"budget": "max_latency_ms", "value": lat, "limit": 1.0, "unit": "ms", "basis": "m", "met": met}]
    return {"number": n, "accuracy": acc, "latency_ms": lat, "energy_mj": energy, "size_kb": size, "fields": {},
            "budgets": budgets, "feasible": met, "latency_label": "host", "energy_basis": "estimated: x"}


def test_the_front_holds_the_undominated_feasible_points_and_the_best_accuracy_is_chosen():
    rows = [_row(0, 99.0, 0.5), _row(1, 98.0, 0.3), _row(2, 97.0, 0.4), _row(3, 99.5, 2.0, met=False),
            _row(4, 99.0, 0.6), _row(5, 98.5, 0.3)]
    front = report.pareto(rows, ["accuracy", "latency"])
    assert [r["number"] for r in front] == [5, 0]  # 1 is dominated by 5, 2 by 5, 4 by 0, 3 misses a budget
    assert report.choose(rows, load_profile("rpi4"))["number"] == 0


def test_no_feasible_point_names_the_budget_and_the_closest_trial():
    rows = [_row(0, 99.0, 3.0, met=False), _row(1, 98.0, 1.2, met=False)]
    with pytest.raises(BudgetError) as e:
        report.choose(rows, load_profile("rpi4"))
    msg = str(e.value)
    assert "max_latency_ms was met by no trial" in msg and "closest: trial 1 (max_latency_ms 1.2 ms > 1)" in msg


def test_a_trials_progress_line_shows_a_large_per_layer_table_as_its_count_and_range():
    from edgepack.tune import search, space

    table = {f"model.s{i}.cv{j}.0": 0.3 if i % 2 else 0.5 for i in range(8) for j in range(4)}
    overrides = space.overrides({"pruning.layer_ratios": table, "pruning.importance": "l2"})
    shown = [search._shown(o) for o in overrides]
    assert "pruning.layer_ratios={32 layers at 0.3 to 0.5}" in shown and 'pruning.importance="l2"' in shown
    small = space.overrides({"pruning.layer_ratios": {"a": 0.2}})
    assert [search._shown(o) for o in small] == small  # a short table is shown whole


def test_a_studys_input_shape_is_kept_and_a_run_at_another_is_refused(tmp_path):
    """A study started with --input-shape builds every trial (and every worker's) at that shape."""
    from edgepack.errors import StudyError
    from edgepack.tune.study import open_study, storage

    store = storage(f"sqlite:///{tmp_path / 'study.db'}")
    ident = {"target": "rpi4", "model": "zoo:yolo-det", "weights": None, "data": "digits-det", "calibration": None,
             "objectives": ["accuracy"], "space": [], "input_shape": [1, 3, 64, 64]}
    open_study(store, "s", ident, directions=["maximize"], sampler=None)
    _, theirs = open_study(store, "s", None, directions=[], sampler=None)  # a worker joining
    assert theirs["input_shape"] == [1, 3, 64, 64]
    _, again = open_study(store, "s", dict(ident), directions=["maximize"], sampler=None)
    assert again["input_shape"] == [1, 3, 64, 64]
    with pytest.raises(StudyError, match="another input_shape"):
        open_study(store, "s", {**ident, "input_shape": [1, 3, 160, 160]}, directions=["maximize"], sampler=None)


def test_the_front_table_names_the_tasks_metric():
    from edgepack.tasks import Task
    from edgepack.tune import report

    rows = [{**_row(0, 85.64, 0.19), "held_out": 83.4}, {**_row(1, -3.2, 0.1), "held_out": None}]
    det = report.table(rows[:1], rows[0], [], Task("detection", heads=(("box", (4, 2, 2)), ("cls", (3, 2, 2))),
                                                    input_hw=(8, 8)))
    assert det[0].split()[:3] == ["trial", "val", "mAP@0.5"] and "85.64" in det[1] and "83.40" in det[1]
    assert report.table(rows[:1], rows[0], [])[0].split()[:4] == ["trial", "val", "acc", "%"]
    mae = report.table(rows[1:], rows[1], [], Task("regression", units="degrees"))
    assert "val MAE degrees" in mae[0] and "3.2 " in mae[1]  # an error metric: its value, not the quality
