"""``hyperopt.graph_viz.dot_hyperparameters``: the space's conditional structure in Graphviz dot.

Each hyperparameter is a box; each choice branch that activates others an ellipse
(``"model=1"``); an arrow goes from what is sampled first to what depends on it. Render with
``dot -Tpng space.dot > space.png``.
"""
from __future__ import annotations

from typing import Any

from .pyll_utils import expr_to_config

__all__ = ["dot_hyperparameters"]


def dot_hyperparameters(expr: Any) -> str:
    hps: dict = {}
    expr_to_config(expr, (), hps)
    lines = ["digraph {"]
    edges: set[str] = set()

    def edge(a: str, b: str) -> None:
        text = f'"{a}" -> "{b}";'
        if text not in edges:
            edges.add(text)
            lines.append(text)

    for label, entry in hps.items():
        lines.append(f'"{label}" [ shape=box];')
        for conds in entry["conditions"]:
            if not conds:
                continue
            names = [f"{c.name}{c.op}{c.val}" for c in conds]
            parent = " & ".join(names)
            lines.append(f'"{parent}" [ shape=ellipse];')
            edge(parent, label)
            if len(conds) > 1:
                for c, name in zip(conds, names, strict=True):
                    lines.append(f'"{name}" [ shape=ellipse];')
                    edge(c.name, name)
                    edge(name, parent)
            else:
                edge(conds[0].name, parent)
    lines.append("}")
    return "\n".join(lines) + "\n"
