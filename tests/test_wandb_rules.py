"""wandb 0.31's summary and step rules, one test per rule, read back through the Api.

Each rule was found by running the same program under wandb 0.31 (offline) and
reading its ``.wandb`` file back; the expected values here are what wandb stored.
Where wandb's behaviour is a bug we chose not to copy (min/max with NaN, min of
text), README says so and the test pins ours.
"""

from __future__ import annotations

import math

import pytest

import mpbackend

pytestmark = pytest.mark.timeout(60)


def _stored(run: mpbackend.Run) -> tuple[dict, list[dict]]:
    """The finished run as the Api reads it: (summary without _ keys, history rows
    without _runtime/_timestamp)."""
    api_run = mpbackend.Api(str(run.dir).rsplit("/", 2)[0]).run(run.id)
    summary = {k: v for k, v in api_run.summary.items() if not k.startswith("_")}
    rows = [{k: v for k, v in row.items() if k not in ("_runtime", "_timestamp")}
            for row in api_run.history(pandas=False)]
    return summary, rows


def test_a_nested_logged_dict_has_a_nested_summary_and_dotted_history_keys(rundir):
    run = mpbackend.init(project="rules")
    run.log({"n": {"a": 1, "b": 2}, "m": {"x": {"y": 3}}, "e": {}, "n.lit": 4})
    run.log({"n": {"b": 5}})
    assert run.summary["n"] == {"a": 1, "b": 5}  # the live view is nested too
    run.finish()
    summary, rows = _stored(run)
    assert summary == {"n": {"a": 1, "b": 5}, "m": {"x": {"y": 3}}, "n.lit": 4}
    assert rows == [{"_step": 0, "n.a": 1, "n.b": 2, "m.x.y": 3, "n.lit": 4},
                    {"_step": 1, "n.b": 5}]


def test_define_metric_after_logging_aggregates_every_value_since_the_first_log(rundir):
    run = mpbackend.init(project="rules", settings={"commit_interval": 0.01})
    for acc in (0.5, 0.9, 0.7):
        run.log({"acc": acc, "loss": acc * 2})
    run.flush()  # some of the values are in the store, read back by define_metric
    run.log({"acc": 0.95, "loss": 0.1})
    run.define_metric("acc", summary="max")
    run.define_metric("loss", summary="min,mean,first")
    # Before any later log, the plain last values stay.
    assert run.summary["acc"] == 0.95 and run.summary["loss"] == 0.1
    run.log({"acc": 0.6, "loss": 0.3})
    run.finish()
    summary, _ = _stored(run)
    assert summary["acc"] == {"max": 0.95}
    assert summary["loss"]["min"] == 0.1 and summary["loss"]["first"] == 1.0
    assert summary["loss"]["mean"] == pytest.approx((1.0 + 1.8 + 1.4 + 0.1 + 0.3) / 5)


def test_define_metric_with_no_later_log_keeps_the_plain_last_value(rundir):
    run = mpbackend.init(project="rules")
    for acc in (0.5, 0.9, 0.7):
        run.log({"acc": acc})
    run.define_metric("acc", summary="max")
    run.finish()
    assert _stored(run)[0] == {"acc": 0.7}


def test_the_last_write_wins_between_summary_and_log(rundir):
    run = mpbackend.init(project="rules")
    run.summary["k"] = 5
    run.log({"k": 1})  # logged after: the logged value
    run.log({"j": 1})
    run.summary["j"] = 7  # set after: the set value, through later rows without j
    run.log({"other": 1})
    run.summary.best = 3
    run.summary.gone = 1
    del run.summary.gone
    run.finish()
    assert _stored(run)[0] == {"k": 1, "j": 7, "other": 1, "best": 3}


def test_summary_first_and_a_redefinition_merges_into_the_earlier_one(rundir):
    """As in wandb 0.31: a later define_metric of a name merges (ops add up, what it
    leaves out stays, "none" then "max" is max); overwrite=True replaces."""
    run = mpbackend.init(project="rules")
    run.define_metric("x", summary="first")
    run.define_metric("y", summary="none")
    run.define_metric("y", summary="max")  # re-enables y
    run.define_metric("z", summary="none")
    run.define_metric("w", summary="min")
    run.define_metric("w", summary="max")  # adds max
    run.define_metric("v", summary="min")
    run.define_metric("v", summary="max", overwrite=True)  # replaces min
    run.define_metric("loss", step_metric="s")
    run.define_metric("loss", summary="min")  # keeps its step metric
    run.log({"s": 5})
    for v in (3, 1, 2):
        run.log({"x": v, "y": v, "z": v, "w": v, "v": v, "loss": v})
    run.finish()
    summary, rows = _stored(run)
    assert summary == {"x": {"first": 3}, "y": {"max": 3}, "w": {"min": 1, "max": 3},
                       "v": {"max": 3}, "loss": {"min": 1}, "s": 5}
    assert [r["z"] for r in rows[1:]] == [3, 1, 2]  # the history keeps z
    assert [r["s"] for r in rows] == [5, 5, 5, 5]


def test_log_of_an_empty_dict_is_a_committed_row(rundir):
    run = mpbackend.init(project="rules")
    run.log({})
    run.log({})
    run.log({}, commit=False)  # nothing: no row pending to commit
    run.log({"a": 1})
    assert run.step == 3
    run.finish()
    assert _stored(run)[1] == [{"_step": 0}, {"_step": 1}, {"_step": 2, "a": 1}]


def test_a_glob_never_matches_underscore_keys(rundir):
    run = mpbackend.init(project="rules")
    run.define_metric("*", summary="max")
    run.define_metric("_bar", summary="max")  # an exact name does
    run.log({"loss": 3, "_foo": 5, "_bar": 1})
    run.log({"loss": 1, "_foo": 2, "_bar": 4})
    run.finish()
    api_run = mpbackend.Api(str(rundir)).run(run.id)
    summary = api_run.summary
    assert summary["loss"] == {"max": 3} and summary["_foo"] == 2
    assert summary["_bar"] == {"max": 4}
    assert summary["_step"] == 1 and isinstance(summary["_runtime"], float)
    assert isinstance(summary["_timestamp"], float)


def test_step_sync_fills_the_last_numeric_step_value_or_zero(rundir):
    run = mpbackend.init(project="rules")
    run.define_metric("s")
    run.define_metric("loss", step_metric="s")
    run.define_metric("raw", step_metric="s", step_sync=False)
    run.log({"loss": 1.0})  # s has no value yet: 0
    run.log({"s": "abc", "loss": 2})  # text: stored in its row, never filled in
    run.log({"loss": 3})
    run.log({"s": 4, "loss": 5})
    run.log({"loss": 6, "raw": 1})
    run.log({"raw": 2})
    run.finish()
    summary, rows = _stored(run)
    assert [(r.get("s"), r.get("loss")) for r in rows] == [
        (0, 1.0), ("abc", 2), (0, 3), (4, 5), (4, 6), (None, None)]
    assert "s" not in rows[5]
    assert summary["s"] == 4 and summary["loss"] == 6


def test_none_leaves_the_summary_and_summary_none_is_stored_as_null(rundir):
    run = mpbackend.init(project="rules")
    run.log({"x": 1})
    run.log({"x": None})
    run.summary["k"] = None
    run.finish()
    summary, rows = _stored(run)
    assert summary == {"x": 1, "k": None}
    assert rows[1] == {"_step": 1, "x": None}


def test_a_key_logged_as_a_value_and_then_as_a_dict_ends_as_the_last(rundir):
    run = mpbackend.init(project="rules")
    run.log({"k": 1})
    run.log({"k": {"a": 2}})
    run.log({"j": {"a": 2}})
    run.log({"j": 1})
    run.finish()
    summary, rows = _stored(run)
    assert summary == {"k": {"a": 2}, "j": 1}
    assert rows == [{"_step": 0, "k": 1}, {"_step": 1, "k.a": 2},
                    {"_step": 2, "j.a": 2}, {"_step": 3, "j": 1}]


def test_min_and_max_skip_nan_and_text_where_wandb_does_not(rundir):
    """wandb 0.31 keeps min NaN once a NaN is logged and gives ``{"min": 0}`` for text
    only; README names both as wandb behaviour we do not copy."""
    run = mpbackend.init(project="rules")
    run.define_metric("a", summary="min,max")
    run.define_metric("t", summary="min")
    for v in (0.5, math.nan, 0.7, 0.3):
        run.log({"a": v, "t": "text"})
    run.finish()
    summary, _ = _stored(run)
    assert summary["a"] == {"min": 0.3, "max": 0.7} and summary["t"] == {}


def test_a_lower_step_is_dropped_and_commit_false_merges(rundir, caplog):
    run = mpbackend.init(project="rules")
    run.log({"a": 1}, commit=False)
    run.log({"b": 2})
    run.log({"c": 1}, step=5)
    run.log({"d": 2}, step=3)  # lower: dropped with a warning
    run.log({"e": 3})  # no step: merges into the open row at 5
    run.finish()
    _, rows = _stored(run)
    assert rows == [{"_step": 0, "a": 1, "b": 2}, {"_step": 5, "c": 1, "e": 3}]


def test_the_end_summary_shows_nested_keys_as_their_history_columns(rundir):
    """A nested summary is shown by history key (``train.loss``, with its line); a
    define_metric value (``{"max": ..}``) stays whole."""
    from mpbackend.read.end_summary import read

    run = mpbackend.init(project="rules", settings={"quiet": True})
    run.define_metric("acc", summary="max")
    for i in range(4):
        run.log({"train": {"loss": 1.0 / (i + 1)}, "acc": i / 10})
    run.finish()
    shown = {key: (value, points) for key, value, points in read(run.dir)["metrics"]}
    assert set(shown) == {"acc", "train.loss"}
    assert shown["acc"][0] == {"max": 0.3} and shown["train.loss"][0] == 0.25
    assert len([p for p in shown["train.loss"][1] if p == p]) >= 2  # a line from history


def test_a_nested_summary_value_set_in_place_is_stored(rundir):
    """``run.summary["train"]["best"] = v`` stores the new nested value (as wandb's
    SummarySubDict does), at any depth; the value still reads and dumps as a dict."""
    import json

    run = mpbackend.init(project="rules")
    run.log({"train": {"loss": 0.5, "opt": {"lr": 0.1}}})
    train = run.summary["train"]
    assert train == {"loss": 0.5, "opt": {"lr": 0.1}} and json.loads(json.dumps(train))
    train["best"] = 0.4
    run.summary["train"]["opt"]["lr"] = 0.05
    del run.summary.train["loss"]
    assert run.summary["train"] == {"best": 0.4, "opt": {"lr": 0.05}}
    run.finish()
    assert _stored(run)[0] == {"train": {"best": 0.4, "opt": {"lr": 0.05}}}


def test_a_pending_row_merges_by_top_level_key_as_in_wandb(rundir):
    """``log({"loss": {"a": 1}}, commit=False)`` then ``log({"loss": 3})``: the value
    replaces the pending nested dict whole (wandb merges rows by top-level key)."""
    run = mpbackend.init(project="rules")
    run.log({"loss": {"a": {"b": 0.1}}, "keep": 1}, commit=False)
    run.log({"loss": 3})
    run.log({"n": 1}, commit=False)
    run.log({"n": {"x": 2}})
    run.finish()
    _, rows = _stored(run)
    assert rows == [{"_step": 0, "loss": 3, "keep": 1}, {"_step": 1, "n.x": 2}]


def test_first_last_none_and_nan_as_wandb_stores_them(rundir):
    """first and last take any value (None, text, lists), min/max/mean numbers only;
    ``"last,none"`` leaves the key out; a NaN set on the summary or the config is
    stored as null (a NaN logged in a row stays NaN); NaN is a step metric's value."""
    run = mpbackend.init(project="rules", config={"bad": math.nan, "ok": [1.0, math.nan]})
    run.define_metric("f", summary="first,last,min")
    run.define_metric("gone", summary="last,none")
    run.define_metric("loss", step_metric="epoch")
    run.log({"f": None, "gone": 1, "epoch": math.nan})
    run.log({"f": "text", "loss": 1.0})
    run.log({"f": 2})
    run.log({"f": None})
    run.summary["s"] = math.nan
    run.summary.update({"nested": {"x": math.nan}})
    run.finish()
    summary, rows = _stored(run)
    assert summary["f"] == {"first": None, "last": None, "min": 2}
    assert "gone" not in summary
    assert summary["s"] is None and summary["nested"] == {"x": None}
    assert math.isnan(rows[1]["epoch"])  # NaN filled in as the step metric's value
    info = mpbackend.Api(str(rundir)).run(run.id)
    assert info.config == {"bad": None, "ok": [1.0, None]}


def test_a_key_set_on_the_summary_is_stored_plain_from_then_on(rundir):
    """As in wandb (its "explicit" summary keys): ``summary[k] = v`` on a key with
    summary ops makes its later logged values plain."""
    run = mpbackend.init(project="rules")
    run.define_metric("acc", summary="max")
    run.define_metric("other", summary="max")
    run.log({"acc": 0.5, "other": 0.5})
    run.summary["acc"] = 0.9
    run.log({"acc": 0.3, "other": 0.3})
    run.finish()
    assert _stored(run)[0] == {"acc": 0.3, "other": {"max": 0.5}}


def test_a_summary_set_before_any_definition_applies_leaves_the_key_to_be_shaped(rundir):
    """wandb makes a key plain only when a definition already applies at the set: one
    defined after the set (or a glob that has not matched the key yet) shapes it."""
    run = mpbackend.init(project="rules")
    run.summary["a"] = -3
    run.define_metric("*", summary="mean")
    run.log({"a": 7})
    run.summary["b"] = 1
    run.define_metric("b", summary="max")
    run.log({"b": 0.3})
    run.finish()
    assert _stored(run)[0] == {"a": {"mean": 7}, "b": {"max": 0.3}}


def test_a_literal_dotted_key_is_its_own_summary_key_and_merges_as_one(rundir):
    """``"n.a"`` logged as a key is not ``n -> a``: the summary keeps both, and merged
    into a pending ``{"n": {...}}`` it replaces no nested key (found by the
    differential test, seeds 1004 and 1032)."""
    run = mpbackend.init(project="rules")
    run.log({"n": {"a": -1}})
    run.log({"n.a": 3})
    run.log({"m": {"a": -1, "b": {"c": 0}}}, step=8)
    run.log({"x": 0})
    run.finish()
    summary, rows = _stored(run)
    assert summary == {"n": {"a": -1}, "n.a": 3, "m": {"a": -1, "b": {"c": 0}}, "x": 0}
    assert rows[2] == {"_step": 8, "m.a": -1, "m.b.c": 0, "x": 0}
    run = mpbackend.init(project="rules")
    run.log({"n": {"a": -1, "b": {"c": 0}}}, step=8)
    run.log({"z.q": 0})
    run.finish()
    summary, rows = _stored(run)
    assert rows == [{"_step": 8, "n.a": -1, "n.b.c": 0, "z.q": 0}]
    assert summary == {"n": {"a": -1, "b": {"c": 0}}, "z.q": 0}


def test_a_step_metric_filled_by_a_glob_is_summarized_plain(rundir):
    """wandb applies a glob's summary ops to logged values, not to the step metric it
    fills in (seeds 1008, 1038); the step metric's own definition still shapes it."""
    run = mpbackend.init(project="rules")
    run.define_metric("*", step_metric="epoch", summary="last")
    run.log({"loss": 1.0})
    run.finish()
    assert _stored(run)[0] == {"loss": {"last": 1.0}, "epoch": 0}
    run = mpbackend.init(project="rules")
    run.define_metric("epoch", summary="max")
    run.define_metric("*", step_metric="epoch")
    run.log({"loss": 1.0})
    run.finish()
    assert _stored(run)[0] == {"loss": 1.0, "epoch": {"max": 0}}


def test_a_key_that_turns_into_a_dict_starts_its_aggregates_again(rundir):
    """wandb's aggregates of ``k`` restart once ``k`` is logged as a dict (seed 1040)."""
    run = mpbackend.init(project="rules")
    run.define_metric("val/*", summary="first,max")
    run.log({"val/loss": 5})
    run.log({"val/loss": {"a": 1}})
    run.log({"val/loss": 2})
    run.finish()
    assert _stored(run)[0]["val/loss"] == {"first": 2, "max": 2}


def test_a_definition_after_the_change_reads_back_only_values_after_it(rundir):
    run = mpbackend.init(project="rules")
    run.log({"val/loss": [1, 3]})
    run.define_metric("val/*", summary="first")
    run.log({"val/loss": {"a": 5}})
    run.define_metric("acc", summary="max")  # a definition later: nothing read back
    run.log({"val/loss": -0.22})
    run.finish()
    assert _stored(run)[0]["val/loss"] == {"first": -0.22}


def test_a_summary_set_restarts_aggregates_and_a_delete_restarts_first(rundir):
    """As wandb 0.31 stored it (differential seeds 2000, 1014): setting ``n`` to a dict
    on the summary restarts the aggregates of ``n.a``, setting a plain value
    restarts nothing; deleting ``loss`` restarts only its ``first``, also for a
    definition made after the delete."""
    run = mpbackend.init(project="rules")
    run.define_metric("n.*", summary="first,max,mean")
    run.log({"n": {"a": -1}, "loss": 5})
    run.log({"n": {"a": 8}, "loss": -1.7})
    del run.summary["loss"]
    run.log({"loss": -1.65})
    run.summary.update({"n": {"a": 2}})
    run.log({"n": {"a": 0}})
    run.define_metric("loss", summary="first,max")
    run.log({"loss": 4, "acc": -0.46})
    run.summary["acc"] = 2.66
    run.log({"acc": -1.15})
    run.define_metric("acc", summary="first")
    run.log({"acc": 0})
    run.finish()
    summary = _stored(run)[0]
    assert summary["n"] == {"a": {"first": 0, "max": 0, "mean": 0.0}}
    assert summary["loss"] == {"first": -1.65, "max": 5}
    assert summary["acc"] == {"first": -0.46}


def test_a_delete_before_any_definition_keeps_counting_every_value(rundir):
    """``del summary[k]`` with no definition yet: the values logged after it still
    count (only ``first`` restarts) once a definition comes."""
    run = mpbackend.init(project="rules")
    run.log({"loss": 5})
    del run.summary["loss"]
    run.log({"loss": 3})
    run.log({"loss": 7})
    run.define_metric("loss", summary="first,max")
    run.log({"loss": 1})
    run.finish()
    assert _stored(run)[0]["loss"] == {"first": 3, "max": 7}
