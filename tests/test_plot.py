"""``hpo-mongo plot`` writes a real, non-blank PNG (checked by reading the image back)."""
from __future__ import annotations

import json
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
    assert len(fig.axes) == 3  # convergence + one panel per parameter
    ticks = [t.get_text() for t in fig.axes[2].get_xticklabels()] + [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert "a" in ticks  # the choice panel shows option values, not indices
