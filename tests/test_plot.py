"""``hpo-mongo plot`` writes a real, non-blank PNG (checked by reading the image back)."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from tests.extras import require
from tests.test_cli import exp, objective, run, space  # noqa: F401

Image = require("PIL.Image", "plot")
require("matplotlib", "plot")


def _check_png(path, min_size=(1000, 700)):
    img = Image.open(path)
    assert img.format == "PNG"
    w, h = img.size
    assert w >= min_size[0] and h >= min_size[1], img.size
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    not_white = np.any(rgb < 235, axis=2).mean()
    assert 0.03 < not_white < 0.6, f"{not_white:.3f} of the pixels are not white"
    colours = {tuple(c) for c in rgb.reshape(-1, 3)[:: 7].tolist()}
    assert len(colours) > 100  # points coloured by trial order, lines, text: not a flat image
    red = (np.abs(rgb[..., 0] - 214) < 20) & (np.abs(rgb[..., 1] - 39) < 25) & (np.abs(rgb[..., 2] - 40) < 25)
    assert red.sum() > 50  # the best-trial stars
    return img.size


def test_plot_command_writes_png(exp, tmp_path):
    path = tmp_path / "progress.png"
    r = run("plot", "--mongo", exp["url"], "-o", str(path))
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("panels") and "7 panels" in r.output  # convergence + 6 parameters
    w, h = _check_png(path)
    assert h > w * 0.6  # one row for convergence plus two rows of parameter panels


def test_plot_selected_params_and_unknown(exp, tmp_path):
    path = tmp_path / "two.png"
    r = run("plot", "--mongo", exp["url"], "-o", str(path), "--params", "lr,act")
    assert r.exit_code == 0 and "3 panels" in r.output
    _check_png(path, min_size=(1000, 500))
    info = json.loads(run("plot", "--mongo", exp["url"], "-o", str(path), "--params", "act", "--json").stdout)
    assert info == {"trials": info["trials"], "panels": 2, "path": str(path)} and info["trials"] >= 16
    r = run("plot", "--mongo", exp["url"], "-o", str(tmp_path / "x.png"), "--params", "nope")
    assert r.exit_code == 2 and r.output.startswith("Error: unknown parameter(s) ['nope']")


def test_plot_trials_in_memory(tmp_path):
    from hpo_mongo import Trials, fmin, rand
    from hpo_mongo.plot import plot_trials
    trials = Trials()
    fmin(objective, space(), algo=rand.suggest, max_evals=20, trials=trials, rstate=np.random.default_rng(2),
         show_progressbar=False, catch_eval_exceptions=True)
    info = plot_trials(trials, tmp_path / "mem.png", space=space(), title="in memory")
    assert info == {"trials": 20, "panels": 7, "path": str(tmp_path / "mem.png")}
    _check_png(tmp_path / "mem.png")


def test_missing_matplotlib_message(exp, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = run("plot", "--mongo", exp["url"], "-o", str(tmp_path / "x.png"))
    assert r.exit_code == 2
    assert r.output.strip() == "Error: matplotlib is not installed: pip install 'hpo_mongo[plot]' to draw plots"
    assert not (tmp_path / "x.png").exists()


def test_hyperopt_plotting_functions_return_figures():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import numpy as np

    from hpo_mongo import Trials, fmin, hp, rand
    from hpo_mongo.plotting import main_plot_histogram, main_plot_history, main_plot_vars
    trials = Trials()
    fmin(lambda d: d["x"] ** 2 if d["c"] == "a" else float("nan"),
         {"x": hp.uniform("x", -1, 1), "c": hp.choice("c", ["a", "b"])}, algo=rand.suggest,
         max_evals=20, trials=trials, rstate=np.random.default_rng(0), show_progressbar=False)
    fig = main_plot_history(trials, do_show=False)
    assert fig.axes[0].get_title(loc="left") == "Loss History"
    fig = main_plot_histogram(trials, do_show=False)
    assert "ok," in fig.axes[0].get_title(loc="left")
    fig = main_plot_vars(trials, do_show=False, columns=2)
    axes = panels(fig)
    assert len(axes) == 3  # convergence + one panel per parameter
    ticks = [t.get_text() for t in axes[2].get_xticklabels()] + [t.get_text() for t in axes[1].get_xticklabels()]
    assert "a" in ticks  # the choice panel shows option values, not indices


# ----------------------------------------------------------------------------- a nested sklearn-style space
def panels(fig):
    """The figure's plotting axes (not its colour bar)."""
    return [a for a in fig.axes if a.get_label() != "<colorbar>"]


def texts(ax) -> list[str]:
    out = [ax.get_title(loc="left"), ax.get_title(loc="right"), ax.get_xlabel(), ax.get_ylabel()]
    out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    legend = ax.get_legend()
    if legend is not None:
        out += [t.get_text() for t in legend.get_texts()]
    return [t for t in out if t]


def classifier_space():
    """hyperopt's classic example: a choice of classifiers, each with its own (nested) parameters."""
    from hpo_mongo import hp
    return {
        "classifier": hp.choice("classifier", [
            {"type": "naive_bayes", "alpha": hp.loguniform("nb_alpha", math.log(1e-3), math.log(10))},
            {"type": "svm", "C": hp.loguniform("svm_C", math.log(1e-3), math.log(1e3)),
             "kernel": hp.choice("svm_kernel", [
                 {"ktype": "linear"},
                 {"ktype": "rbf", "gamma": hp.loguniform("svm_rbf_gamma", math.log(1e-4), 0)}])},
            {"type": "random_forest", "n_estimators": hp.uniformint("rf_n_estimators", 10, 500),
             "max_depth": hp.choice("rf_max_depth", [None, hp.uniformint("rf_max_depth_value", 2, 30)]),
             "criterion": hp.choice("rf_criterion", ["gini", "entropy"])},
            {"type": "knn", "n_neighbors": hp.uniformint("knn_n_neighbors", 1, 50)},
        ]),
        "scale": hp.choice("scale", [True, False]),
    }


def classifier_loss(p):
    c = p["classifier"]
    if c["type"] == "knn" and c["n_neighbors"] > 40:
        raise ValueError("too many neighbours")
    loss = {"naive_bayes": 0.30, "svm": 0.12, "random_forest": 0.15, "knn": 0.22}[c["type"]]
    if c["type"] == "svm":
        loss += 0.02 * (math.log10(c["C"]) - 1) ** 2
    return loss + (0.0 if p["scale"] else 0.03)


@pytest.fixture(scope="module")
def classifier_figure():
    import matplotlib.pyplot as plt

    from hpo_mongo import Trials, fmin, rand
    from hpo_mongo.export import space_of
    from hpo_mongo.plot import experiment_figure
    require_matplotlib_agg()
    trials = Trials()
    fmin(classifier_loss, classifier_space(), algo=rand.suggest, max_evals=30, trials=trials,
         rstate=np.random.default_rng(1), show_progressbar=False, catch_eval_exceptions=True)
    fig, n = experiment_figure(trials.trials, space_of(trials, None), title="classifiers")
    yield trials, fig, n
    plt.close(fig)


def require_matplotlib_agg():
    from hpo_mongo.plot import require_matplotlib
    require_matplotlib()


def test_nested_choice_labels_are_readable(classifier_figure):
    trials, fig, _ = classifier_figure
    every = [t for ax in fig.axes for t in texts(ax)] + [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    every = [t for t in every if not t.startswith("$\\mathdefault")]  # log-axis ticks are mathtext
    assert not [t for t in every if any(c in t for c in '${"')]  # no JSON of options anywhere
    by_title = {ax.get_title(loc="left"): ax for ax in panels(fig)}
    ticks = [t.get_text() for t in by_title["classifier  [choice]"].get_xticklabels()]
    assert ticks == ["naive_bayes", "svm", "random_forest", "knn"]
    legends = [t for ax in panels(fig) for t in texts(ax)]
    assert any(t == "linear" for t in legends) or any("linear | rbf" in t for t in legends)  # svm_kernel's options
    assert any("None | rf_max_depth_value" in t for t in legends) or "rf_max_depth  [choice]" in by_title


def test_x_axis_is_the_trial_number_with_integer_ticks(classifier_figure):
    trials, fig, _ = classifier_figure
    conv = panels(fig)[0]
    assert conv.get_title(loc="left") == "convergence"
    assert conv.get_xlabel() == "trial number within the experiment"
    assert conv.get_xlim() == (0.5, len(trials.trials) + 0.5)
    shown = [float(t) for t in conv.get_xticks() if 0.5 <= t <= len(trials.trials) + 0.5]
    assert shown and all(t.is_integer() for t in shown)
    for ax in panels(fig):
        title = ax.get_title(loc="left")
        if "[uniformint]" in title:  # integer parameters: integer ticks
            assert all(float(t).is_integer() for t in ax.get_xticks()), title


def test_every_mark_has_a_legend_and_sparse_parameters_are_grouped(classifier_figure):
    from hpo_mongo.plot import sparse_limit
    trials, fig, n_panels = classifier_figure
    conv = panels(fig)[0]
    legend = [t.get_text() for t in conv.get_legend().get_texts()]
    assert legend[:2] == ["successful trial", "best loss so far"] and legend[2].startswith("best trial: loss ")
    n_failed = sum(t["state"] == 3 for t in trials.trials)
    assert n_failed and legend[3] == f"failed trial ({n_failed})"
    assert [a for a in fig.axes if a.get_label() == "<colorbar>"][0].get_ylabel() == "trial number"
    marks = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    marks += [t.get_text() for ax in fig.axes if not ax.axison and ax.get_legend() for t in ax.get_legend().get_texts()]
    assert {"successful trial (colour: trial number)", "best trial", "median loss of an option"} <= set(marks)
    # parameters active in few trials share a panel per branch; no panel is mostly empty
    n_ok = sum(t["state"] == 2 for t in trials.trials)
    grouped = [ax for ax in panels(fig) if ax.get_title(loc="left").startswith(("when ", "parameters active"))]
    assert grouped
    for ax in grouped:
        assert len(ax.get_legend().get_texts()) >= 2  # one entry (marker) per parameter, with its range
    singles = [ax for ax in panels(fig)[1:] if ax not in grouped and ax.axison]
    counts = {ax.get_title(loc="left"): int(ax.get_xlabel().split()[0]) for ax in singles}
    assert sum(c < sparse_limit(n_ok) for c in counts.values()) <= 1, counts  # at most one lone sparse one
    assert n_panels == 1 + len(singles) + len(grouped) < 1 + len(classifier_space_labels())


def classifier_space_labels():
    from hpo_mongo.space import compile_space
    return [p["label"] for p in compile_space(classifier_space()).to_json()]


def test_plot_numbers_trials_within_the_experiment(exp):
    """The "other" experiment's tids follow the default experiment's: its x-axis still starts at 1."""
    from hpo_mongo import inspect as hi
    from hpo_mongo.plot import experiment_figure
    from hpo_mongo.trials.factory import connect_queue
    require_matplotlib_agg()
    queue = connect_queue(exp["url"])
    try:
        other = hi.get_experiment(queue, "other")
        docs = hi.find_trials(queue, "other")
    finally:
        queue.close()
    assert min(d["tid"] for d in docs) >= 16
    fig, _ = experiment_figure(docs, other.space)
    assert panels(fig)[0].get_xlim() == (0.5, len(docs) + 0.5)
