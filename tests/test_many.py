"""reconcile_many: splitting, seeds, failure isolation (no MCMC), and real runs on a Dask LocalCluster (slow)."""

from __future__ import annotations

import os
import signal
import warnings
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pandas as pd
import pytest

import estimates as est
from estimates.many import GROUP_COLUMNS, group_seed

# --------------------------------------------------------------------------- no MCMC


def test_group_seed_depends_on_the_run_seed_and_the_key_only():
    assert group_seed(0, ("a", 1)) == group_seed(0, ("a", np.int64(1)))  # numpy and Python values agree
    assert group_seed(0, ("a", 1)) != group_seed(1, ("a", 1))
    assert group_seed(0, ("a", 1)) != group_seed(0, ("a", 2))
    assert group_seed(None, ("a", 1)) is None


def test_unknown_grouping_column_and_unknown_option_fail_before_anything_runs():
    claims = pd.DataFrame({"region": ["A"], "low": [5], "high": [9], "group": ["g"]})
    with pytest.raises(est.OptionError, match=r"by= names \['grp'\].*its columns are: region, low, high, group"):
        est.reconcile_many(claims, by="grp")
    with pytest.raises(est.OptionError, match=r"does not take: \['draw'\]"):
        est.reconcile_many(claims, by="group", draw=10)
    with pytest.raises(est.OptionError, match="at least one column"):
        est.reconcile_many(claims, by=[])


def test_bad_groups_fail_alone_with_their_rows_and_the_input_is_untouched():
    # every group here fails at validation, so nothing samples
    claims = pd.DataFrame(
        {
            "region": ["A", "A", "B", "C"],
            "low": [5000, 8000, 100, 7],
            "high": [9000, 6000, 200, 9],
            "group": ["bad-range", "bad-range", None, "no-such-kind"],
            "kind": [None, None, None, "roughly"],
        }
    )
    before = claims.copy(deep=True)
    seen = []
    runs = est.reconcile_many(claims, by="group", progress=False, on_result=lambda k, r, e: seen.append((k, r, e)))
    pd.testing.assert_frame_equal(claims, before)
    assert len(runs) == 3 and runs.results == {}
    g = runs.groups.set_index("group")
    assert list(runs.groups.columns) == ["group", *GROUP_COLUMNS]
    assert (g["status"] == "failed").all()
    assert g.loc["bad-range", "error_type"] == "InvalidRangeError" and g.loc["bad-range", "n_claims"] == 2
    assert g.loc["no-such-kind", "error_type"] == "UnknownKindError"
    empty = runs.groups[runs.groups["group"].isna()].iloc[0]  # the row without a group value
    assert empty["error_type"] == "OptionError"
    assert "rows 2 have no value in the grouping column(s) group" in empty["error"]
    # nothing lost: every input row, in input order, says why it was not used
    assert len(runs.claims) == 4 and list(runs.claims["region"]) == ["A", "A", "B", "C"]
    assert runs.claims["status"].str.startswith("failed: ").all()
    assert "InvalidRangeError" in runs.claims.loc[1, "status"]
    assert sorted(str(k) for k, r, e in seen) == ["('bad-range',)", "('no-such-kind',)"]  # streamed as they finished
    assert all(r is None and e for _, r, e in seen)
    with pytest.raises(KeyError, match="failed: InvalidRangeError"):
        runs["bad-range"]
    assert "0 reconciled, 3 failed" in runs.summary()


class _DeadPool:
    """An executor whose worker processes have all died: every future fails."""

    def submit(self, fn, *args):  # noqa: ANN001, ANN201
        f: Future = Future()
        f.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
        return f


def test_a_lost_worker_is_reported_per_group_never_missing():
    claims = pd.DataFrame({"region": ["A", "B", "B"], "low": [5, 6, 7], "high": [9, 9, 9], "group": ["x", "y", "y"]})
    runs = est.reconcile_many(claims, by="group", executor=_DeadPool(), progress=False)
    assert len(runs.groups) == 2 and (runs.groups["status"] == "failed").all()
    assert set(runs.groups["error_type"]) == {"BrokenProcessPool"}
    assert runs.groups["error"].str.contains("the group was lost, not reconciled").all()
    assert list(runs.groups["n_claims"]) == [1, 2]
    assert runs.claims["status"].str.contains("BrokenProcessPool").all() and len(runs.claims) == 3


# --------------------------------------------------------------------------- real fits on Dask

N_GROUPS = 8
OPTIONS = {"refits": 0, "progress": False}  # default draws: 4 x (1000 + 1000)


def _groups() -> tuple[pd.DataFrame, dict]:
    """Eight worlds of one design (one layout of claims: one compiled model per process)."""
    tables, hierarchy = [], None
    for i in range(N_GROUPS):
        world = est.simulate(regions=2, periods=3, sources=3, claims_per_cell=1.5, seed=100 + i, design_seed=7)
        tables.append(world.claims.assign(group=f"g{i}"))
        hierarchy = world.hierarchy
    return pd.concat(tables, ignore_index=True), hierarchy


def _reconcile_many(claims, hierarchy, **kw):
    # refits=0 on purpose (fast); the warning that some tensions are PSIS-only is expected and checked elsewhere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", est.ApproximationWarning)
        return est.reconcile_many(claims, by="group", hierarchy=hierarchy, **OPTIONS, **kw)


@pytest.fixture(scope="module")
def groups():
    return _groups()


@pytest.fixture(scope="module")
def serial(groups):
    return _reconcile_many(*groups)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    # Same seed, same compiled model structure, same machine: the draws are identical, so the
    # tables must agree to rounding (1e-9 relative allows a different summation order, no more).
    cols = ["median", "lower", "upper"]
    keys = ["group", "region", "time"]
    a, b = a.sort_values(keys).reset_index(drop=True), b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[keys], b[keys])
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=1e-9)


@pytest.mark.slow
def test_serial_run_reconciles_every_group_and_compiles_once(serial):
    g = serial.groups
    assert len(g) == N_GROUPS and (g["status"] == "ok").all()
    assert g["converged"].all(), serial.summary()
    assert g["compiled"].sum() <= 1  # one layout, one process: the first group compiles, the rest reuse it
    assert g["worker"].nunique() == 1
    assert set(serial.intervals["group"]) == {f"g{i}" for i in range(N_GROUPS)}
    assert list(serial.intervals.columns[:2]) == ["group", "quantity"]
    assert serial.claims["status"].eq("used").all()
    assert len(serial.claims) == sum(len(r.claims) for r in serial.results.values())


@pytest.mark.slow
def test_dask_run_matches_the_serial_run_and_compiles_once_per_worker(groups, serial, client):
    runs = _reconcile_many(*groups, executor=client)
    g = runs.groups
    assert (g["status"] == "ok").all() and len(g) == N_GROUPS
    assert g["worker"].nunique() == 2  # both workers took groups
    assert (g.groupby("worker")["compiled"].sum() <= 1).all(), g[["group", "worker", "compiled"]]
    _same_numbers(runs.intervals, serial.intervals)


@pytest.mark.slow
def test_a_bad_group_on_dask_is_reported_and_the_other_seven_succeed(groups, serial, client):
    claims, hierarchy = groups
    bad = claims.copy()
    row = bad.index[bad["group"] == "g3"][0]
    bad.loc[row, ["low", "high"]] = [9000.0, 100.0]  # high below low
    if "value" in bad:
        bad.loc[row, "value"] = np.nan
    runs = _reconcile_many(bad, hierarchy, executor=client)
    g = runs.groups.set_index("group")
    assert g.loc["g3", "status"] == "failed" and g.loc["g3", "error_type"] == "InvalidRangeError"
    assert f"claim {int((bad['group'] == 'g3').cumsum()[row]) - 1}" in g.loc["g3", "error"]  # the row, within its group
    assert (g.drop(index="g3")["status"] == "ok").all()
    assert runs.claims.loc[bad["group"] == "g3", "status"].str.startswith("failed: InvalidRangeError").all()
    ok = serial.intervals[serial.intervals["group"] != "g3"]
    _same_numbers(runs.intervals, ok)


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_no_group(groups, serial, client):
    pids = client.run(os.getpid)  # worker address -> process id
    killed = []

    def kill_one_worker(key, result, error):  # noqa: ANN001
        if not killed:  # after the first group is back, both workers are busy with their next ones
            victim = next(iter(pids.values()))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    runs = _reconcile_many(*groups, executor=client, on_result=kill_one_worker)
    assert killed
    g = runs.groups
    assert len(g) == N_GROUPS  # nothing missing
    lost = g[g["status"] != "ok"]
    # Dask reschedules what the dead worker held; if it gave up, the group says so
    assert lost["error"].str.contains("lost").all()
    ok = g.loc[g["status"] == "ok", "group"]
    _same_numbers(runs.intervals, serial.intervals[serial.intervals["group"].isin(ok)])
    assert len(ok) == N_GROUPS, lost


def test_cli_by_writes_every_group_and_exits_1_when_one_failed(tmp_path, capsys):
    from estimates.cli import main

    # both groups fail at validation (no sampling): the command still writes what it has and says so
    path = tmp_path / "claims.csv"
    pd.DataFrame(
        {"region": ["A", "B"], "low": [900, 5], "high": [100, 9], "kind": [None, "roughly"], "conflict": ["x", "y"]}
    ).to_csv(path, index=False)
    out, groups = tmp_path / "iv.csv", tmp_path / "groups.csv"
    status = main(["reconcile", str(path), "--by", "conflict", "-o", str(out), "--groups-out", str(groups)])
    assert status == 1
    g = pd.read_csv(groups)
    assert list(g["conflict"]) == ["x", "y"] and (g["status"] == "failed").all()
    assert list(g["error_type"]) == ["InvalidRangeError", "UnknownKindError"]
    assert "0 reconciled, 2 failed" in capsys.readouterr().err
    assert out.exists()
