"""HDM-CAM component by component: docs/figures/cam_ladder.png from the test-split ladder's JSON.

    python scripts/cam_ladder_figure.py [--ladder docs/results/cam_ladder.json] [--out docs/figures/cam_ladder.png]

One panel per metric (pixel AUC, mean IoU, insertion AUC, ROAD): for every rung, its mean difference from the
rung before with the 95 % paired-bootstrap CI (written by `hdm eval-cam --ladder ... --json`). Filled dots are
the choices made on the validation split; open dots the paper's option in their place, against the same rung
before. Draws only what the JSON holds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PANELS = (("auc", "pixel AUC"), ("miou", "mean IoU"), ("insertion", "insertion AUC"), ("road", "ROAD"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ladder", default=str(ROOT / "docs" / "results" / "cam_ladder.json"),
                   help="the JSON of `hdm eval-cam --ladder CHOICES --json FILE`")
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "cam_ladder.png"))
    args = p.parse_args(argv)
    try:
        record = json.loads(Path(args.ladder).read_text())
        rows = [r for r in record["rows"] if r.get("vs_previous")]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: cannot read a ladder from {args.ladder} ({e}); write one with "
              "`hdm eval-cam --ladder docs/results/cam_ladder_choices.json --json FILE`", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["rung"] for r in rows][::-1]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 0.45 * len(rows) + 1.8), sharey=True)
    for ax, (key, title) in zip(axes, PANELS):
        for y, r in enumerate(rows[::-1]):
            c = r["vs_previous"].get(key)
            if not c or c.get("n", 0) < 2:
                continue
            paper = " paper:" in r["rung"]
            lo, hi = c["diff"] - c["diff_lo"], c["diff_hi"] - c["diff"]
            ax.errorbar(c["diff"], y, xerr=[[lo], [hi]], fmt="o", capsize=3,
                        color="tab:orange" if paper else "tab:blue",
                        markerfacecolor="white" if paper else "tab:blue")
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_title(f"{title}: minus the rung before")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    fig.suptitle(f"HDM-CAM ablation ladder on the test split ({record.get('data', '').split('; model file')[0]})", fontsize=9)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
