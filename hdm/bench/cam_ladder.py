"""HDM-CAM component by component: a ladder from multi-layer Grad-CAM++ to the paper's full method.

Rung 0 is Grad-CAM++ on layers 1-4. Rung 1 replaces its weights by HDM-CAM's eq. (11) weight with every other
component off (:data:`START`: no Hessian weight, equal bands and scales, the mean fusion Grad-CAM++ uses) and
chooses the explained score. Each later rung (:data:`RUNGS`) offers the options of one component: the paper's
setting first, then the alternatives; the previous rung's setting is among them ("off", or the current one).

The choice at each rung is made on a validation split by :func:`choose` (a pure function of an
:class:`~hdm.bench.cam.EvalResult`): the previous setting stays unless another option beats it on the primary
metric with a 95 % paired-bootstrap CI above zero and is significantly worse on no guard metric; among those
that qualify the highest primary mean wins. :func:`walk` applies it rung after rung; :func:`ladder_methods`
and :func:`ladder_markdown` report the chosen path on a test split, each rung against the one before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..cam import HDMCAM, GradCAMPlusPlus
from ..errors import BadArgument
from .cam import LAYERS, METRICS, EvalResult, Method, _compare, as_method, ci_text
from .stats import paired_bootstrap

__all__ = ["Rung", "RUNGS", "START", "BASE", "GUARDS", "config_name", "config_methods", "choose", "walk",
           "ladder_methods",
           "ladder_summary", "ladder_markdown"]

#: Rung 0: the method the ladder starts from.
BASE = "Grad-CAM++ (layers 1-4)"
#: HDMCAM keyword arguments of rung 1 before its own choice: eq. (11)'s weight with every other component off.
START = {"target": "exp", "hessian": "none", "bands": "equal", "alpha": "equal", "layer_fusion": "mean",
         "target_layers": list(LAYERS)}
#: Metrics on which a challenger must not be significantly worse (those present in the result are used).
GUARDS = ("auc", "miou", "insertion", "road")
_HIGHER = {k: hi for k, _, hi in METRICS}


@dataclass(frozen=True)
class Rung:
    """One component: ``key`` an HDMCAM keyword (or ``target_layers``), ``options`` the paper's setting first."""

    title: str
    key: str
    options: tuple


RUNGS = (
    Rung("smooth target (the explained score)", "target", ("exp", "softmax")),
    Rung("Hessian weight (eqs. 4-7)", "hessian", ("diag", "eigen", "none")),
    Rung("3rd/4th-order band weights (eqs. 8-10)", "bands", ("weighted", "modulate", "equal")),
    Rung("multi-scale alpha (eq. 13)", "alpha", ("exp", "inverse", "equal")),
    Rung("layer fusion (eq. 14)", "layer_fusion", ("sum", "mean", "product")),
    Rung("layer set", "target_layers", (("layer1", "layer2", "layer3", "layer4"), ("layer2", "layer3", "layer4"),
                                        ("layer3", "layer4"))),
)

_SHORT = {"target": "target", "hessian": "Hessian", "bands": "bands", "alpha": "alpha", "layer_fusion": "fusion"}


def _layers_text(layers) -> str:
    numbers = [n.removeprefix("layer") for n in layers]
    return f"layers {numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else f"layer{numbers[0]}"


def config_name(config: dict) -> str:
    """A readable, unique method name for HDMCAM keyword arguments, e.g.
    ``HDM-CAM [target exp, Hessian none, bands equal, alpha equal, fusion mean, layers 1-4]``."""
    parts = [f"{_SHORT[k]} {config[k]}" for k in _SHORT if k in config]
    return f"HDM-CAM [{', '.join(parts + [_layers_text(config.get('target_layers', LAYERS))])}]"


def config_methods(model, configs: dict) -> dict[str, Method]:
    """``{name: HDMCAM keyword arguments (with target_layers)}`` -> ``{name: method}``."""
    out = {}
    for name, config in configs.items():
        kw = dict(config)
        out[name] = as_method(HDMCAM(model, list(kw.pop("target_layers", LAYERS)), **kw))
    return out


def _worse(a, b, key: str, n_boot: int, seed: int) -> bool:
    """Whether ``a`` is significantly worse than ``b`` on ``key`` (95 % paired-bootstrap CI)."""
    r = paired_bootstrap(a, b, n_boot=n_boot, seed=seed)
    return r.diff_hi < 0 if _HIGHER[key] else r.diff_lo > 0


def choose(result: EvalResult, options: dict, incumbent, metric: str = "miou", guards=GUARDS,
           n_boot: int = 2000, seed: int = 0) -> tuple:
    """The rung's choice: ``(option, reason)``.

    ``options`` maps each option to its method name in ``result``; ``incumbent`` is the previous setting. A
    challenger qualifies if its paired-bootstrap CI against the incumbent on ``metric`` lies above zero (below,
    for a lower-is-better metric) and it is significantly worse on none of ``guards`` present in the result;
    the qualifier with the best ``metric`` mean wins, else the incumbent stays."""
    if incumbent not in options:
        raise BadArgument(f"the incumbent {incumbent!r} is not among the options {list(options)}")
    missing = [name for name in options.values() if name not in result.values]
    if missing or metric not in result.values[options[incumbent]]:
        raise BadArgument(f"the result lacks {missing or metric}: evaluate every option of the rung first")
    inc = result.values[options[incumbent]]
    sign = 1 if _HIGHER[metric] else -1
    qualified = []
    for option, name in options.items():
        if option == incumbent:
            continue
        v = result.values[name]
        r = paired_bootstrap(v[metric], inc[metric], n_boot=n_boot, seed=seed)
        if not (r.diff_lo > 0 if sign > 0 else r.diff_hi < 0):
            continue
        worse = [k for k in guards if k != metric and k in v and _worse(v[k], inc[k], k, n_boot, seed)]
        if not worse:
            qualified.append((sign * float(r.diff), option))
    if not qualified:
        return incumbent, f"kept {incumbent!r}: no option beats it on {metric} without losing on a guard"
    best = max(qualified, key=lambda t: t[0])[1]
    return best, f"{best!r} beats {incumbent!r} on {metric} (CI above zero) and loses on no guard"


def walk(evaluate: Callable[[dict], EvalResult], rungs=RUNGS, start: dict = START, metric: str = "miou",
         guards=GUARDS, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Walk the ladder: for each rung, ``evaluate({method name: HDMCAM config})`` its options not evaluated
    before (on a validation split) and keep :func:`choose`'s pick. Returns one record per rung: ``title``,
    ``key``, ``options``, ``incumbent``, ``choice``, ``reason``, ``config`` (the cumulative configuration after
    the rung), ``paper`` and ``paper_config`` (the paper's option on the configuration before the rung), ``means``
    ``{option: {metric: mean}}``, and ``result`` (the :class:`EvalResult` of its options)."""
    config, records = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in start.items()}, []
    cache: dict[str, tuple] = {}  # method name -> (values, seconds): a rung's incumbent was evaluated before
    first = None
    for rung in rungs:
        configs = {}  # option text -> configuration
        for option in rung.options:
            cfg = {**config, rung.key: list(option) if isinstance(option, tuple) else option}
            if cfg.get("target") == "softmax" and cfg.get("hessian") == "eigen":
                continue  # eqs. 4-5 need the neighbour coupling, which the closed form has for exp(S) only
            configs[_option_text(option)] = cfg
        paper = _option_text(rung.options[0])
        incumbent = next((o for o, c in configs.items() if c[rung.key] == config[rung.key]), paper)
        names = {o: config_name(c) for o, c in configs.items()}
        new = {names[o]: c for o, c in configs.items() if names[o] not in cache}
        if new:
            fresh = evaluate(new)
            first = first or fresh
            cache.update({name: (fresh.values[name], fresh.seconds[name]) for name in new})
        result = EvalResult({names[o]: cache[names[o]][0] for o in configs},
                            {names[o]: cache[names[o]][1] for o in configs}, first.n, first.accuracy, first.meta)
        choice, reason = choose(result, names, incumbent, metric, guards, n_boot, seed)
        config = configs[choice]
        means = {o: {k: float(np.nanmean(v)) for k, v in result.values[names[o]].items()} for o in configs}
        records.append({"title": rung.title, "key": rung.key, "options": list(configs), "incumbent": incumbent,
                        "choice": choice, "reason": reason, "config": dict(config), "paper": paper,
                        "paper_config": dict(configs[paper]), "means": means, "result": result})
    return records


def _option_text(option) -> str:
    return _layers_text(option) if isinstance(option, (tuple, list)) else str(option)


def ladder_methods(model, records: list[dict], paper: bool = True) -> dict[str, Method]:
    """The methods of the test-split ladder, in order: rung 0 (:data:`BASE`, hdm's Grad-CAM++ on layers 1-4),
    then per rung its chosen configuration and, where the choice is not the paper's option, the paper's option on
    the same footing (``records`` from :func:`walk`, or their JSON); with ``paper`` also HDM-CAM as the paper
    gives it (HDMCAM's defaults on layers 1-4)."""
    methods = {BASE: as_method(GradCAMPlusPlus(model, LAYERS))}
    for r in records:
        for config in (r["config"], r.get("paper_config")):
            name = config_name(config) if config else None
            if name and name not in methods:
                methods.update(config_methods(model, {name: config}))
    if paper:
        methods.setdefault("HDM-CAM (exp)", as_method(HDMCAM(model, LAYERS)))
    return methods


def ladder_summary(result: EvalResult, records: list[dict], n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Each rung on ``result`` (a test split): its method, its means and the paired-bootstrap comparison with
    the previous rung's choice on every metric: ``[{"rung", "method", "means", "vs_previous"}]`` (rung 0 has
    none). Where a rung's choice is not the paper's option, a row ``"<i> paper: ..."`` shows the paper's option
    against the same previous rung (what the paper's component does); the ladder goes on from the choice."""
    steps, before = [("0: start", BASE, None)], BASE  # (row, method, the method it is compared with)
    for i, r in enumerate(records, 1):
        chosen = config_name(r["config"])
        steps.append((f"{i}: {r['title']} = {r['choice']}", chosen, before))
        paper = r.get("paper_config")
        if paper and config_name(paper) != chosen:
            steps.append((f"{i} paper: {r['title']} = {r['paper']}", config_name(paper), before))
        before = chosen
    rows = []
    for rung, name, previous in steps:
        if name not in result.values:
            raise BadArgument(f"the result lacks the ladder's method {name!r}")
        v = result.values[name]
        row = {"rung": rung, "method": name, "means": {k: float(np.nanmean(a)) for k, a in v.items()},
               "vs_previous": None}
        if previous is not None:
            row["vs_previous"] = {k: _compare(v[k], result.values[previous][k], n_boot, seed) for k in v}
        rows.append(row)
    return rows


def ladder_markdown(rows: list[dict], records: list[dict]) -> list[str]:
    """Markdown lines: the rung-by-rung table of means, the table of differences from the previous rung
    (95 % paired-bootstrap CIs, ``*`` where the interval excludes zero), and each validation choice."""
    keys = [(k, t) for k, t, _ in METRICS if k in rows[0]["means"]]
    lines = ["## Ablation ladder: from multi-layer Grad-CAM++ to HDM-CAM, one component at a time", "",
             "| rung | method | " + " | ".join(f"{t} {'↑' if _HIGHER[k] else '↓'}" for k, t in keys) + " |",
             "|---" * (len(keys) + 2) + "|"]
    for r in rows:
        lines.append(f"| {r['rung']} | {r['method']} | " + " | ".join(f"{r['means'][k]:.3f}" for k, _ in keys) + " |")
    lines += ["", "Each rung minus the rung before (mean difference, 95 % paired-bootstrap CI; `*`: excludes zero; a "
                  "\"paper\" row: the paper's option in place of the choice, against the same rung before):", "",
              "| rung | " + " | ".join(t for _, t in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows[1:]:
        cells = [ci_text(r["vs_previous"][k], star=True) if r["vs_previous"][k]["n"] >= 2 else "-" for k, _ in keys]
        lines.append(f"| {r['rung']} | " + " | ".join(cells) + " |")
    lines += ["", "Choices on the validation split:", ""]
    for i, rec in enumerate(records, 1):
        lines.append(f"{i}. {rec['title']}: options {', '.join(rec['options'])}; {rec['reason']}.")
    return lines
