"""`rtaug report DIR`: the paper's tables and figures from the `result.json` files under DIR.

Writes DIR/report/ (or --out): `report.md` (a table per task: mean ± std over seeds, IQM with a
bootstrap 95% interval, the D4RL-normalised mean, the paper's number where it has one; then the
evidence behind every run: generated volume, lengths, truncation, Γ, the simulator audit of the
generated rows, and the wall-clock of each stage), `results.csv` for scripts, `curves.png`
(learning curves per task, Fig. 5 style), `q.png` (the critics' mean Q over training: has it
settled by the end of the budget? beside the real data's discounted return, what a critic of the
behaviour policy would converge to), `scores.png` (final scores per task and method,
Figs. 1-2 style) and `lengths.png` (the generated trajectories' length histograms).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from rtaug.fileio import atomic_savefig, atomic_write_bytes

# The paper's numbers (Tables 1 and 2: D4RL-normalised returns, 10 seeds), for comparison only.
# Keys: (task, method label as rtaug names it).
PAPER = {
    ("maze2d-umaze-sparse", "bcq"): 49.3, ("maze2d-umaze-sparse", "ft+bcq"): 50.1,
    ("maze2d-umaze-sparse", "rt+bcq"): 54.3, ("maze2d-medium-sparse", "bcq"): 18.2,
    ("maze2d-medium-sparse", "ft+bcq"): 42.6, ("maze2d-medium-sparse", "rt+bcq"): 55.3,
    ("maze2d-large-sparse", "bcq"): 32.6, ("maze2d-large-sparse", "ft+bcq"): 33.2,
    ("maze2d-large-sparse", "rt+bcq"): 40.8, ("maze2d-umaze-dense", "bcq"): 50.1,
    ("maze2d-umaze-dense", "ft+bcq"): 55.3, ("maze2d-umaze-dense", "rt+bcq"): 68.9,
    ("maze2d-medium-dense", "bcq"): 41.3, ("maze2d-medium-dense", "ft+bcq"): 60.1,
    ("maze2d-medium-dense", "rt+bcq"): 80.6, ("maze2d-large-dense", "bcq"): 75.2,
    ("maze2d-large-dense", "ft+bcq"): 83.4, ("maze2d-large-dense", "rt+bcq"): 98.6,
    ("maze2d-umaze-sparse", "cql"): 19.1, ("maze2d-umaze-sparse", "iql"): 20.1,
    ("maze2d-medium-sparse", "cql"): 14.6, ("maze2d-medium-sparse", "iql"): 10.6,
    ("maze2d-large-sparse", "cql"): 17.2, ("maze2d-large-sparse", "iql"): 19.3,
    ("hopper-medium-replay", "bcq"): 33.3, ("hopper-medium-replay", "cql"): 30.6,
    ("hopper-medium-replay", "iql"): 96.8, ("hopper-medium-replay", "rt+bcq"): 99.3,
    ("walker2d-medium-replay", "bcq"): 16.8, ("walker2d-medium-replay", "cql"): 15.8,
    ("walker2d-medium-replay", "iql"): 74.9, ("walker2d-medium-replay", "rt+bcq"): 70.3,
    ("halfcheetah-medium-replay", "bcq"): 39.2, ("halfcheetah-medium-replay", "cql"): 40.7,
    ("halfcheetah-medium-replay", "iql"): 45.1, ("halfcheetah-medium-replay", "rt+bcq"): 47.0,
}

CSV_COLUMNS = ["task", "method", "n_seeds", "mean", "std", "iqm", "ci_low", "ci_high", "protocol", "commit",
               "d4rl_mean", "paper_d4rl", "learner_steps", "data", "late_mean", "late_std", "late_points"]
METHOD_ORDER = ("none", "ft", "backward-mlp", "rt-f3", "rt-f5", "rt")


def find_results(root) -> list[dict]:
    """Every result.json under `root` (a sweep's output or a directory of runs), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    rows = []
    for path in sorted(root.rglob("result.json")):
        try:
            r = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc})") from None
        if "summary" not in r or "per_seed" not in r:
            raise ValueError(f"{path}: key 'summary': missing (not a result of `rtaug run`)")
        r["_path"] = str(path.parent)
        rows.append(r)
    if not rows:
        raise FileNotFoundError(f"{root}: no result.json below it (run `rtaug run` or `rtaug sweep` first)")
    rows.sort(key=lambda r: (r["task"], r["algo"], _method_rank(r["generator"]), r["label"]))
    return rows


def _method_rank(gen: str) -> int:
    return METHOD_ORDER.index(gen) if gen in METHOD_ORDER else len(METHOD_ORDER)


# A `matmul` field in a label (a sweep's grid axis `learner.matmul`, `generator.model.sequence.matmul`)
# says how the products were computed, not which method ran: the paper's number still applies.
_MATMUL = re.compile(r"-(?:\w+\.)*matmul=(?:onednn-bf16|onednn|xla)(?=-|$)")


def paper_method(label: str) -> str:
    """The paper's method a run's label stands for: the label without its matmul settings."""
    return _MATMUL.sub("", label)


def table_rows(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        s, d = r["summary"]["normalized"], r["summary"]["normalized_d4rl"]
        ci = (s or {}).get("iqm_ci95") or [None, None]
        out.append({"task": r["task"], "method": r["label"], "n_seeds": len(r["seeds"]),
                    "mean": s and s["mean"], "std": s and s["std"], "iqm": s and s["iqm"],
                    "ci_low": ci[0], "ci_high": ci[1], "protocol": r["config"].get("protocol", ""),
                    "commit": r.get("commit"), "d4rl_mean": d and d["mean"],
                    "paper_d4rl": PAPER.get((r["task"], paper_method(r["label"]))), "learner_steps": r["learner_steps"],
                    "data": data_of(r), **late_training(r)})
    return out


def late_training(result: dict) -> dict:
    """The cheap evaluations of the second half of training (steps > half the budget), averaged per
    seed, then mean ± sample std over seeds. A final checkpoint of a policy whose score swings from
    one thousand updates to the next is one noisy draw; the second half's average is the same
    policy read over many checkpoints (and many more episodes), so it separates methods that a
    final score cannot. Keys late_mean, late_std (None below 2 seeds), late_points (per seed, the
    fewest): all None when the run has no learning curve there."""
    half = result["learner_steps"] / 2
    per_seed = [[p["normalized_mean"] for p in v.get("curve", [])
                 if p["step"] > half and p.get("normalized_mean") is not None]
                for v in result.get("per_seed", {}).values()]
    per_seed = [x for x in per_seed if x]
    if not per_seed:
        return {"late_mean": None, "late_std": None, "late_points": None}
    means = np.array([np.mean(x) for x in per_seed])
    return {"late_mean": float(means.mean()), "late_std": float(means.std(ddof=1)) if len(means) > 1 else None,
            "late_points": min(len(x) for x in per_seed)}


def data_of(result: dict) -> str | None:
    """The first 12 hex digits of the fingerprint of the real data a run stands on: as its result
    records it, else (a run from before the record) from its data stage's file if still on disk."""
    from rtaug.experiments.run import data_fingerprint

    fingerprint = ((result.get("evidence") or {}).get("data") or {}).get("fingerprint")
    stage = next((s for s in result.get("stages", []) if s["stage"] == "data"), None)
    if fingerprint is None and stage is not None:
        fingerprint = data_fingerprint({}, Path(stage["path"]))
    return None if fingerprint is None else fingerprint[:12]


def data_note(rows: list[dict]) -> str:
    """One line under a task's table: whether its rows stand on one data file. Rows on two files
    do not compare: the same recipe makes other data on another machine (docs/decisions.md)."""
    files = {}
    for row in rows:
        files.setdefault(row["data"], []).append(row["method"])
    if list(files) == [None]:
        return "Data: the file's fingerprint is not recorded for these runs."
    if len(files) == 1:
        return f"Data: every row on the same file (fingerprint {next(iter(files))})."
    parts = "; ".join(f"{'not recorded' if fp is None else fp}: {', '.join(methods)}" for fp, methods in files.items())
    return f"**Data: these rows stand on {len(files)} different files** ({parts}); rows on different files do not compare."


def _f(x, spec=".1f"):
    return "–" if x is None else format(x, spec)


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row[k] is None else (round(row[k], 3) if isinstance(row[k], float) else row[k]))
                    for k in CSV_COLUMNS})
    return buf.getvalue()


def data_scores(results: list[dict]) -> dict[str, dict]:
    """Per task, the real data's own score (`rtaug describe` of the first run's data stage that is
    still on disk): the bar a learner is read against ("does it beat its data?")."""
    from rtaug.experiments.stages import describe_file

    out = {}
    for r in results:
        data = next((Path(s["path"]) / "data.hdf5" for s in r.get("stages", []) if s["stage"] == "data"), None)
        if r["task"] not in out and data is not None and data.is_file():
            out[r["task"]] = describe_file(data, r["task"])
    return out


def to_markdown(results: list[dict], rows: list[dict], images: list[str], title: str | None = None,
                data: dict[str, dict] | None = None) -> str:
    lines = [f"# {title or 'Results'}", "", "Written by `rtaug report` from the runs listed at the end.", "",
             "Normalized score = 100·(R − random)/(expert − random) with the references measured in this "
             "simulator (`rtaug tasks`); mean ± sample std over seeds; IQM with a percentile-bootstrap 95% "
             "interval over seeds (with fewer than 4 seeds the IQM is the mean and the interval is too narrow). "
             "D4RL-norm. = the same returns under D4RL's published references, the scale of the paper's "
             "numbers (10 seeds, 1M updates). Second half: the learning curve's cheap evaluations after half the "
             "updates, averaged per seed, mean ± std over seeds (points per seed in brackets): the policy read "
             "over many checkpoints, where the final score is one.", ""]
    for task in dict.fromkeys(r["task"] for r in rows):
        lines += [f"## {task}", "",
                  "| method | seeds | updates | normalized | IQM [95% CI] | D4RL-norm. | second half | paper (D4RL-norm.) |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in (r for r in rows if r["task"] == task):
            spread = f" ± {row['std']:.1f}" if row["std"] is not None else ""
            ci = f" [{row['ci_low']:.1f}, {row['ci_high']:.1f}]" if row["ci_low"] is not None else ""
            late = "–" if row["late_mean"] is None else (
                f"{row['late_mean']:.1f}" + (f" ± {row['late_std']:.1f}" if row["late_std"] is not None else "")
                + f" ({row['late_points']})")
            lines.append(f"| {row['method']} | {row['n_seeds']} | {row['learner_steps']} | {_f(row['mean'])}{spread} "
                         f"| {_f(row['iqm'])}{ci} | {_f(row['d4rl_mean'])} | {late} | {_f(row['paper_d4rl'])} |")
        d = (data or {}).get(task)
        if d is not None and d["episode_return"] is not None:
            score = {k: (d[k] or {}).get("mean") for k in ("normalized", "normalized_d4rl")}
            lines.append(f"| *the data itself* ({d['episodes']:,} episodes' mean return) | | | {_f(score['normalized'])} "
                         f"| | {_f(score['normalized_d4rl'])} | | |")
        lines += ["", data_note([r for r in rows if r["task"] == task]), ""]
    for i in images:
        file, alt = (i, Path(i).stem) if isinstance(i, str) else i
        lines.append(f"![{alt}]({file})")
    lines.append("")
    lines += ["## Evidence behind each run", "",
              "Generated rows: transitions kept, mean length (of at most L), share of trajectories truncated by "
              "Γ > α, α, the mean cumulative reliability Γ of the generated rows (an error: lower is more "
              "reliable); share: generated rows among the rows the learner trains on (Eq. 11's merge=suffix adds a "
              "copy of each trajectory's real suffix, so on long episodes generated rows are a small part); "
              "audit: the simulator's error on generated transitions (reset to s, apply a, distance "
              "to the written s′) and how many cross a wall. Stage times: this machine, the stage computed "
              "(cached stages show the time of the run that built them).", "",
              "| task | method | generated | share | mean length | truncated | α | mean Γ (gen.) | sim. error (gen.) "
              "| wall rate (gen.) | compute (s) | stages (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        g = (r.get("evidence") or {}).get("generation") or {}
        a = ((r.get("evidence") or {}).get("audit") or {}).get("generated") or {}
        stages = ", ".join(f"{s['stage']} {s['wall_s']:.0f}" for s in r["stages"] if s.get("wall_s") is not None)
        share = generated_share(r)
        share_cell = "–" if share is None else f"{100 * share:.1f}% ({g.get('merge', '?')})"
        error_cell = _f(a.get("mean_error"), ".3g")
        relabel = (r.get("evidence") or {}).get("relabel")
        if relabel:  # generator.relabel=simulator: the audit is of the relabelled rows
            error_cell += f" (relabelled by the simulator; the model's rows: {_f(relabel.get('mean_error_before'), '.3g')})"
        lines.append(
            f"| {r['task']} | {r['label']} | {g.get('generated_transitions', '–')} | {share_cell} | "
            f"{_f(g.get('mean_length'), '.2f')} of {g.get('max_length', '–')} | "
            f"{_f(100 * g['truncated_fraction'] if 'truncated_fraction' in g else None)}% | {_f(g.get('alpha'), '.3g')} | "
            f"{_f(r.get('_gamma_mean'), '.3g')} | {error_cell} | {_f(a.get('wall_rate'), '.3f')} | {_f(r.get('compute_s'), '.0f')} | {stages} |")
    lines += ["", "## How these were made", ""]
    made = {}
    for r in results:
        made.setdefault((r.get("command"), r.get("commit")), []).append(r)
    for (command, sha), runs in made.items():
        lines.append(f"- `{command or '(command not recorded)'}` at commit {sha}: "
                     + ", ".join(f"{r['task']} {r['label']}" for r in runs))
    lines += ["", "Each run's config as run: `config` in its result.json; runs: "
              + ", ".join(f"`{r['_path']}`" for r in results), ""]
    return "\n".join(lines)


def generated_share(result: dict) -> float | None:
    """Fraction of the rows a run's learner trains on that are generated: what a uniform batch sees.

    With merge=suffix each kept trajectory brings a copy of its real suffix, so on 1,000-step
    episodes (halfcheetah) the generated rows are ~1% of the training file however many were made.
    """
    g = (result.get("evidence") or {}).get("generation") or {}
    if "generated_rows" not in g:
        return None
    only_generated = ((result.get("config") or {}).get("learner") or {}).get("data") == "generated"
    total = g["generated_rows"] + g.get("copied_rows", 0) + (0 if only_generated else g.get("input_rows", 0))
    return g["generated_rows"] / total if total else None


def generated_gamma(result: dict) -> float | None:
    """Mean Γ over the generated rows a run trained on (read from its generated stage's file)."""
    import h5py

    stage = next((x for x in result["stages"] if x["stage"] == "generated"), None)
    path = Path(stage["path"]) / "data.hdf5" if stage else None
    if path is None or not path.is_file():
        return None
    with h5py.File(path, "r") as f:
        if "generated" not in f or "reliability" not in f:
            return None
        gen = np.asarray(f["generated"][...], bool).reshape(-1)
        gamma = np.asarray(f["reliability"][...], np.float64).reshape(-1)
    return float(gamma[gen].mean()) if gen.any() else None


def _save_panels(fig, axes, ylabel: str, path: Path) -> Path:
    """A row of per-task panels: one y label, one legend (a legend per panel where the panels'
    methods differ: each panel colours its own lines in turn), saved atomically."""
    import matplotlib.pyplot as plt

    axes[0][0].set_ylabel(ylabel)
    labels = [ax.get_legend_handles_labels()[1] for ax in axes[0]]
    for ax in axes[0] if any(lab != labels[-1] for lab in labels) else axes[0][-1:]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_lengths(results: list[dict], path: Path) -> Path | None:
    """Histogram of generated trajectory lengths per run (truncation at work: mass below L)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(r, ((r.get("evidence") or {}).get("generation") or {}).get("length_histogram")) for r in results]
    runs = [(r, h) for r, h in runs if h]
    if not runs:
        return None
    tasks = list(dict.fromkeys(r["task"] for r, _ in runs))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [(r, h) for r, h in runs if r["task"] == task]
        width = 0.8 / len(mine)
        for j, (r, h) in enumerate(mine):
            h = np.asarray(h, np.float64)
            x = np.arange(len(h)) + (j - (len(mine) - 1) / 2) * width
            ax.bar(x, h / max(h.sum(), 1.0), width, label=r["label"])
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("generated length (steps kept)")
        ax.grid(axis="y", alpha=0.3)
    return _save_panels(fig, axes, "share of trajectories", path)


def _plot_seed_curves(runs: list, ylabel: str, path: Path, levels: dict | None = None) -> Path | None:
    """Per task a panel; per run (result, [per seed [(step, value), ...]]) its seeds' mean as a
    line and their range shaded; `levels` {task: (value, label)} a dashed reference line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(r, seeds) for r, seeds in runs if seeds]
    if not runs:
        return None
    tasks = list(dict.fromkeys(r["task"] for r, _ in runs))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r, seeds in (x for x in runs if x[0]["task"] == task):
            n = min(len(s) for s in seeds)
            steps = [p[0] for p in seeds[0][:n]]
            y = np.array([[p[1] for p in s[:n]] for s in seeds], np.float64)
            line, = ax.plot(steps, y.mean(0), label=r["label"])
            if len(y) > 1:
                ax.fill_between(steps, y.min(0), y.max(0), color=line.get_color(), alpha=0.15)
        if levels and task in levels:
            value, label = levels[task]
            ax.axhline(value, color="0.3", ls="--", lw=1, label=label)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("updates")
        ax.grid(alpha=0.3)
    return _save_panels(fig, axes, ylabel, path)


def _policy_tables(result: dict, name: str):
    """(seed, rows) of each of a run's policies' `name` table (the training loop's metrics.csv or
    eval.csv), as written into its policy stage's run directory."""
    for stage in (s for s in result["stages"] if s["stage"] == "policy"):
        for table in sorted(Path(stage["path"]).glob(f"run/seed_*/{name}")):
            with table.open() as f:
                yield table.parent.name.removeprefix("seed_"), list(csv.DictReader(f))


def plot_q(results: list[dict], path: Path) -> Path | None:
    """Mean Q of the sampled batches over training, per task and method (seeds' range shaded):
    whether the critic has settled by the end of the budget, which a score alone cannot say."""

    def series(rows):
        return [(int(r["step"]), float(r["q_mean"])) for r in rows if r.get("q_mean") not in (None, "")]

    runs = [(r, [q for q in (series(rows) for _, rows in _policy_tables(r, "metrics.csv")) if q]) for r in results]
    levels = {}
    for r in results:
        if r["task"] not in levels and (q := behaviour_value(r)) is not None:
            levels[r["task"]] = (q, f"real data's discounted return ({q:.1f})")
    return _plot_seed_curves(runs, "mean Q of the training batches", path, levels)


def behaviour_value(result: dict) -> float | None:
    """The real data's mean discounted reward-to-go at the learner's discount: what a critic of
    the behaviour policy converges to, so a reference for where a learner's mean Q should be
    heading (an improved policy's critic settles above it, by at most the optimal policy's)."""
    from rtaug.data.episodes import reward_to_go
    from rtaug.data.hdf5 import load_hdf5

    data = [s for s in result.get("stages", []) if s["stage"] == "data"]
    runs = [Path(s["path"]) / "run" / "run.json" for s in result.get("stages", []) if s["stage"] == "policy"]
    if not data or not (Path(data[0]["path"]) / "data.hdf5").exists() or not runs or not runs[0].exists():
        return None
    gamma = json.loads(runs[0].read_text())["config"].get("discount")
    if gamma is None:  # a learner without a critic (BC)
        return None
    d = load_hdf5(Path(data[0]["path"]) / "data.hdf5")
    return float(reward_to_go(d.rewards, d.episodes(), gamma).mean())


def plot_curves(results: list[dict], path: Path, data: dict[str, dict] | None = None) -> Path | None:
    """The periodic cheap evaluations (normalized score) over training, per task and method, and
    the data's own score (`data_scores`) as a dashed line where it is known."""
    # a task whose references are not measured yet (locomotion) has no normalized points: not drawn
    runs = [(r, [c for c in ([(p["step"], p["normalized_mean"]) for p in v["curve"] if p.get("normalized_mean") is not None]
                             for v in r["per_seed"].values()) if c])
            for r in results]
    levels = {task: (d["normalized"]["mean"], "the data itself") for task, d in (data or {}).items()
              if d.get("normalized")}
    return _plot_seed_curves(runs, "normalized score (cheap evaluations)", path, levels)


def plot_scores(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(tasks) * max(1, len(methods)) / 2), 3.8))
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, t in enumerate(tasks):
            row = next((r for r in rows if r["task"] == t and r["method"] == m), None)
            if row is None or row["mean"] is None:
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(row["iqm"])
            lo.append(row["iqm"] - (row["ci_low"] if row["ci_low"] is not None else row["iqm"]))
            hi.append((row["ci_high"] if row["ci_high"] is not None else row["iqm"]) - row["iqm"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=m)
    ax.set_xticks(range(len(tasks)), tasks, rotation=15, fontsize=8)
    ax.set_ylabel("normalized score (IQM, 95% CI)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def generated_pictures(results: list[dict], prefix: str = "") -> list[tuple[str, Path, list[str]]]:
    """(file name, audit picture, labels of the runs it stands for), one per audit stage: runs that
    share their generated rows (one generator under several learners, or an ablation of a later
    stage such as Eq. 11's merge) share one picture rather than identical copies under each label.
    The name is the first such run's label without its learner (rt+bcq -> rt), the audit's key
    added only where two different generations would otherwise take one name."""
    by_audit: dict[str, tuple[Path, dict, list[str]]] = {}
    for r in results:
        audit = next((x for x in r["stages"] if x["stage"] == "audit"), None)
        pic = Path(audit["path"]) / "generated.png" if audit else None
        if pic is None or not pic.is_file():
            continue
        by_audit.setdefault(str(pic), (pic, r, []))[2].append(r["label"])
    named, out = set(), []
    for pic, r, labels in by_audit.values():
        algo = ((r.get("config") or {}).get("learner") or {}).get("algo", "")
        generator = r["label"].replace(f"+{algo}", "", 1) if algo else r["label"]
        stem = f"{prefix}generated-{r['task']}-{generator}".replace("+", "-")
        if stem in named:
            stem += f"-{pic.parent.name[:8]}"
        named.add(stem)
        out.append((f"{stem}.png", pic, labels))
    return out


def plot_generated(data_path, task, path, max_transitions: int = 3000, seed: int = 0) -> Path | None:
    """The maze's walls and a sample of the generated transitions (s → s′ as segments, D4RL's
    frame), those whose s′ lies inside a wall in red: what the audit's wall rate counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patches
    from matplotlib.collections import LineCollection

    from rtaug.data.hdf5 import load_hdf5
    from rtaug.envs.maze2d import BODY_OFFSET
    from rtaug.envs.registry import get_task

    data = load_hdf5(data_path)
    if data.generated is None or not data.generated.any():
        return None
    layout = get_task(task).layout
    rows = np.flatnonzero(data.generated)
    rows = np.sort(np.random.default_rng(seed).choice(rows, min(max_transitions, len(rows)), replace=False))
    s = data.observations[rows, :2] + BODY_OFFSET
    s2 = data.next_observations[rows, :2] + BODY_OFFSET
    bad = layout.in_wall(data.next_observations[rows, :2])
    h, w = layout.shape
    fig, ax = plt.subplots(figsize=(0.6 * w + 1, 0.6 * h + 1))
    for i, j in np.argwhere(layout.walls):
        ax.add_patch(patches.Rectangle((j - 0.5, i - 0.5), 1, 1, color="0.3"))
    for mask, color, label in ((~bad, "tab:blue", "generated s → s′"), (bad, "tab:red", "s′ inside a wall")):
        if mask.any():
            segs = np.stack([s[mask][:, ::-1], s2[mask][:, ::-1]], axis=1)
            ax.add_collection(LineCollection(segs, colors=color, linewidths=0.6, alpha=0.6,
                                                                    label=f"{label} ({int(mask.sum())})"))
    gi, gj = layout.goal_cell
    ax.plot([gj], [gi], marker="*", color="gold", markersize=14, markeredgecolor="k", label="goal")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_title(f"{task}: {len(rows)} of {int(data.generated.sum())} generated transitions", fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_tensorboard(root, logdir, printer=print) -> int:
    """Every run's training metrics and learning curves under `root` as TensorBoard events, one
    event directory per method and seed (`<logdir>/<task>/<method>/seed_<n>`); returns how many
    scalars it wrote. Optional: needs tensorboardX (`pip install "rtaug[tensorboard]"`); nothing
    else in rtaug does."""

    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs tensorboardX: pip install 'rtaug[tensorboard]'") from None
    logdir = Path(logdir)
    written = 0
    for r in find_results(root):
        per_seed = {}  # one event file per seed: its training metrics and its evaluations
        for csv_name, group in (("metrics.csv", "train"), ("eval.csv", "eval")):
            for seed, rows in _policy_tables(r, csv_name):
                per_seed.setdefault(seed, []).append((group, rows))
        for seed, tables in per_seed.items():
            writer = SummaryWriter(str(logdir / r["task"] / r["label"] / f"seed_{seed}"))
            for group, rows in tables:
                for row in rows:
                    step = int(row.pop("step"))
                    for k, v in row.items():
                        if v not in ("", None):
                            writer.add_scalar(f"{group}/{k}", float(v), step)
                            written += 1
            writer.close()
    printer(f"wrote {written} scalars under {logdir} (tensorboard --logdir {logdir})")
    return written


# ------------------------------------------------------------------ SAC runs (locomotion data)

SAC_CSV_COLUMNS = ["env_id", "seed", "steps", "budget", "finished", "final_return", "final_return_std",
                   "expert_level", "expert_given", "medium_step", "medium_return", "wall_h", "hours_per_million", "path"]


def find_sac_runs(root) -> list[dict]:
    """Every SAC run under `root` (`rtaug collect --sac-dir`'s directory, or a `sac` stage of the
    experiment cache: a run.json of algo "sac" beside its curve.csv), with its learning curve."""
    from rtaug.collect.sac import read_curve

    runs = []
    for path in sorted(Path(root).rglob("run.json")):
        try:
            info = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc})") from None
        if not isinstance(info, dict) or info.get("algo") != "sac":
            continue
        curve = read_curve(path.parent) if (path.parent / "curve.csv").exists() else []
        runs.append({"path": str(path.parent), "env_id": info["config"]["env_id"], "seed": info["config"]["seed"],
                     "budget": int(info["total_steps"]), "curve": curve,
                     "expert_return": _given_expert_return(path.parent)})
    return runs


def _given_expert_return(run_dir: Path) -> float | None:
    """The expert level `rtaug collect ... --sac expert_return=` cut this run's data at, read from
    the policy data it drew into the run's data/ (a run stopped at the cut has no expert of its own,
    and its last five evaluations would put the cut elsewhere); None when none was given."""
    from rtaug.data.hdf5 import load_metadata

    given = set()
    for path in sorted((run_dir / "data").glob("*.hdf5")):
        recipe = (load_metadata(path).get("collector") or {}).get("recipe") or {}
        if recipe.get("expert_return") is not None:
            given.add(float(recipe["expert_return"]))
    if len(given) > 1:
        raise ValueError(f"{run_dir / 'data'}: files cut at different expert returns {sorted(given)}: "
                         "report them from separate run directories")
    return given.pop() if given else None


def sac_rows(runs: list[dict], fraction: float = 1 / 3) -> list[dict]:
    """Per SAC run: how far it is, its last evaluation (the expert's return once finished) and
    where the medium cut falls (the first evaluation at `fraction` of the mean of the last five:
    D4RL's recipe, `rtaug.collect.locomotion.medium_cut`)."""
    from rtaug.collect.locomotion import medium_cut

    rows = []
    for run in runs:
        curve = run["curve"]
        row = {"env_id": run["env_id"], "seed": run["seed"], "budget": run["budget"], "path": run["path"],
               **dict.fromkeys(["steps", "finished", "final_return", "final_return_std", "expert_level", "expert_given",
                                "medium_step", "medium_return", "wall_h", "hours_per_million"])}
        if curve:
            last, cut = curve[-1], medium_cut(curve, fraction, expert_return=run.get("expert_return"))
            steps = int(last["step"])
            wall_h = float(last["wall_s"]) / 3600 if last.get("wall_s") not in (None, "") else None
            row.update(steps=steps, finished=steps == run["budget"], final_return=float(last["return_mean"]),
                       final_return_std=float(last["return_std"]), expert_level=cut["expert_level"],
                       medium_step=cut["medium_step"], medium_return=cut["medium_return"], wall_h=wall_h,
                       expert_given=cut["window"] == 0,
                       hours_per_million=None if wall_h is None else wall_h / (steps / 1e6))
        rows.append(row)
    return rows


def plot_sac(runs: list[dict], path: Path, fraction: float = 1 / 3) -> Path | None:
    """One panel per environment: each seed's evaluation return over environment steps (± its
    episodes' std), the medium threshold (`fraction` of the mean of the last five returns) and the
    medium cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from rtaug.collect.locomotion import medium_cut

    runs = [r for r in runs if r["curve"]]
    if not runs:
        return None
    envs = list(dict.fromkeys(r["env_id"] for r in runs))
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for r in (x for x in runs if x["env_id"] == env):
            steps = np.array([c["step"] for c in r["curve"]], np.float64)
            mean = np.array([c["return_mean"] for c in r["curve"]], np.float64)
            std = np.array([c["return_std"] for c in r["curve"]], np.float64)
            line, = ax.plot(steps, mean, label=f"seed {r['seed']}")
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
            cut = medium_cut(r["curve"], fraction, expert_return=r.get("expert_return"))
            of = f"the last {cut['window']} returns' mean" if cut["window"] else "the given expert_return"
            ax.axhline(cut["threshold"], color=line.get_color(), ls="--", lw=1, label=f"{fraction:.2g} of {of}")
            ax.plot([cut["medium_step"]], [cut["medium_return"]], "o", color=line.get_color(), label="medium cut")
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("environment steps")
        # plain step counts (20000, 40000, ...) run into each other under a 4.5-inch panel
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_steps_label))
        ax.grid(alpha=0.3)
    return _save_panels(fig, axes, "evaluation return (10 episodes)", path)


def _steps_label(x: float, _pos=None) -> str:
    return f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"


def sac_markdown(rows: list[dict], image: str | None) -> str:
    lines = ["## SAC runs (the locomotion data's source)", "",
             "Each run's evaluation return (deterministic actor, its evaluation episodes) at its last "
             "evaluation (the expert's once the run has reached its budget), and the medium cut: the first "
             "evaluation at a third of the mean of the last five (D4RL's recipe; it moves while a run is "
             "unfinished), or of the expert's return given to the data (`expert_return`, marked \"given\": "
             "the run then stops at the cut). Wall hours are the run's own, summed over its resumptions, on this machine "
             "(shared with other work).",
             "", "| env | seed | steps / budget | last return | mean of the last five | medium cut: step, return "
             "| wall h | h per 1M steps |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["steps"] is None:
            lines.append(f"| {r['env_id']} | {r['seed']} | 0 / {r['budget']:,} | – | – | – | – | – |")
            continue
        lines.append(f"| {r['env_id']} | {r['seed']} | {r['steps']:,} / {r['budget']:,}"
                     f"{'' if r['finished'] else ' (running)'} | {r['final_return']:.1f} ± {r['final_return_std']:.1f} "
                     f"| {r['expert_level']:.1f}{' (given)' if r.get('expert_given') else ''} "
                     f"| {r['medium_step']:,}, {r['medium_return']:.1f} | {_f(r['wall_h'], '.2f')} "
                     f"| {_f(r['hours_per_million'], '.2f')} |")
    lines += ["", f"![sac]({image})" if image else "", "Runs: " + ", ".join(f"`{r['path']}`" for r in rows), ""]
    return "\n".join(lines)


def write_report(root, out=None, printer=print, name: str | None = None) -> Path:
    """Tables, CSV and figures of every result under `root`; returns the Markdown file's path.

    Files: OUT/report.md, results.csv, curves.png, ...; with `name` (e.g. "table2", for
    docs/results/) OUT/<name>.md, <name>.csv and <name>-curves.png, ... instead."""
    try:
        results = find_results(root)
    except FileNotFoundError:
        if not Path(root).is_dir():
            raise
        results = []
    sac = find_sac_runs(root)
    seen = {r["path"] for r in sac}
    for r in results:  # a locomotion run's SAC stage lives in the cache, not under `root`
        for st in r["stages"]:
            where = Path(st["path"]) / "sac" if st["stage"] == "sac" else None
            if where is not None and str(where) not in seen and (where / "run.json").is_file():
                given = (r["config"].get("data") or {}).get("recipe", {}).get("expert_return")
                sac += [{**run, "expert_return": run["expert_return"] if given is None else given}
                        for run in find_sac_runs(where)]
                seen.add(str(where))
    if not results and not sac:
        raise FileNotFoundError(f"{root}: no result.json or SAC run below it (run `rtaug run`, `rtaug sweep` or "
                                "`rtaug collect` on a locomotion task first)")
    out = Path(out) if out is not None else Path(root) / "report"
    out.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = (out / f"{name}.md", out / f"{name}.csv") if name else (out / "report.md", out / "results.csv")
    prefix = f"{name}-" if name else ""
    if not results:  # SAC runs alone (runs/sac): their table, CSV and curves
        rows = sac_rows(sac)
        sac_csv = out / f"{prefix}sac.csv"
        buf = io.StringIO()
        w = csv.DictWriter(buf, SAC_CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(sac_csv, buf.getvalue().encode())
        image = plot_sac(sac, out / f"{prefix}sac.png")
        md = f"# {name or 'SAC runs'}\n\n" + sac_markdown(rows, image.name if image else None)
        atomic_write_bytes(md_path, md.encode())
        printer(md.rstrip())
        printer(f"wrote {md_path}, {sac_csv}" + (f", {image}" if image else ""))
        return md_path
    rows = table_rows(results)
    atomic_write_bytes(csv_path, to_csv(rows).encode())
    for r in results:
        r["_gamma_mean"] = generated_gamma(r)
    images = []
    data = data_scores(results)
    if plot_curves(results, out / f"{prefix}curves.png", data):
        images.append(f"{prefix}curves.png")
    if plot_q(results, out / f"{prefix}q.png"):
        images.append(f"{prefix}q.png")
    if plot_lengths(results, out / f"{prefix}lengths.png"):
        images.append(f"{prefix}lengths.png")
    plot_scores(rows, out / f"{prefix}scores.png")
    images.append(f"{prefix}scores.png")
    for picture, source, runs in generated_pictures(results, prefix):
        atomic_write_bytes(out / picture, source.read_bytes())
        images.append((picture, f"generated rows of {', '.join(runs)}"))
    md = to_markdown(results, rows, images, title=name, data=data)
    if sac:  # a locomotion sweep's own SAC stages
        image = plot_sac(sac, out / f"{prefix}sac.png")
        if image:
            images.append(image.name)
        md += "\n" + sac_markdown(sac_rows(sac), image.name if image else None)
    atomic_write_bytes(md_path, md.encode())
    printer(md.split("## Evidence")[0].rstrip())
    files = [i if isinstance(i, str) else i[0] for i in images]
    printer(f"wrote {md_path}, {csv_path}, {', '.join(str(out / f) for f in files)}")
    return md_path


__all__ = ["write_report", "write_tensorboard", "find_results", "table_rows", "generated_share", "data_scores", "data_of", "data_note", "to_csv", "to_markdown", "late_training", "PAPER", "CSV_COLUMNS",
           "find_sac_runs", "sac_rows", "plot_sac", "SAC_CSV_COLUMNS",
           "generated_pictures"]
