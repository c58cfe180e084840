"""The `rtaug` command line: the quickstart and the pipeline stages, each with its own --help."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
rtaug: the Reliability-guaranteed Transformer (RT) for model-based offline RL.

RT learns a transformer over trajectories (state, action, reward, reward-to-go), generates new
trajectories backward from dataset states, scores each generated step with a cumulative
reliability Γ, truncates a trajectory when Γ passes α, and penalises rewards by β·Γ/α.

Typical use:
  rtaug quickstart                                  # everything on BoxBall, < 5 min on 2 cores
  rtaug collect boxball --out data/boxball.hdf5     # a dataset (D4RL layout)
  rtaug train-model --dataset data/boxball.hdf5 --out models/boxball
  rtaug augment --dataset data/boxball.hdf5 --model models/boxball --out data/boxball-rt.hdf5
"""


def _add_progress(p):
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (logs still print)")


def _cmd_quickstart(args):
    from rtaug.experiments.quickstart import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig(seed=args.seed, trajectories=args.trajectories)
    cfg.dqn.seed = args.seed
    run_quickstart(cfg, out=args.out, progress=not args.no_progress)


def _cmd_collect(args):
    from rtaug.data.hdf5 import save_hdf5

    if args.task == "boxball":
        from rtaug.collect.dqn import DQNConfig, collect_boxball

        data = collect_boxball(DQNConfig(total_steps=args.steps or 20_000, seed=args.seed),
                               progress=not args.no_progress)
        save_hdf5(data, args.out)
        print(f"wrote {args.out}: {len(data)} transitions, {data.metadata.get('episodes')} episodes, "
              f"{data.metadata.get('episodes_reaching_goal')} reach the goal")
        return
    from rtaug.collect.waypoint import collect_maze2d
    from rtaug.envs.registry import get_task

    get_task(args.task)  # an unknown task is a clear error before any work
    data = collect_maze2d(args.task, steps=args.steps, seed=args.seed, progress=not args.no_progress,
                          timeouts=args.timeouts)
    save_hdf5(data, args.out)
    print(f"wrote {args.out}: {len(data)} transitions ({args.task}, D4RL protocol, seed {args.seed})")


def _cmd_audit(args):
    import json

    if args.task == "boxball":
        import numpy as np

        from rtaug.data.hdf5 import load_hdf5
        from rtaug.envs.audit import audit_boxball_transitions
        from rtaug.fileio import atomic_write_json

        data = load_hdf5(args.file)
        res = audit_boxball_transitions(data.observations, data.actions, data.next_observations)

        def part(mask):
            n = int(mask.sum())
            return {"transitions": n, "invalid_rate": float(1 - res["valid"][mask].mean()) if n else float("nan"),
                    "wall_crossings": int(res["wall_crossing"][mask].sum()), "off_grid": int(res["off_grid"][mask].sum())}

        summary = part(np.ones(len(data), bool))
        if data.generated is not None:
            summary["generated"] = part(data.generated)
            summary["real"] = part(~data.generated)
        if args.json:
            atomic_write_json(args.json, summary)
    else:
        from rtaug.envs.maze_audit import audit_maze_file
        from rtaug.envs.registry import get_task

        get_task(args.task)
        summary = audit_maze_file(args.file, args.task, json_out=args.json, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))


def _cmd_tasks(args):
    from rtaug.envs.registry import get_task, task_names

    print("boxball: 10x10 grid with a wall in front of the goal (paper Fig. 4); data by an online DQN")
    for name in task_names():
        print(f"{name}: {get_task(name).describe()}")


def _cmd_reference(args):
    import json

    from rtaug.envs.registry import get_task
    from rtaug.evaluate import measure_references
    from rtaug.fileio import atomic_write_json

    get_task(args.task)
    refs = measure_references(args.task, seed=args.seed, max_episodes=args.max_episodes)
    print(json.dumps(refs, indent=2, default=str))
    if args.json:
        atomic_write_json(args.json, json.loads(json.dumps(refs, default=str)))


def _cmd_train_model(args):
    from rtaug.experiments.stages import train_model
    from rtaug.generate.baselines import BackwardMLPConfig
    from rtaug.generate.model import RTConfig
    from rtaug.generate.train import VAEConfig

    rt_cfg = RTConfig(
        direction=args.direction, context_steps=args.context_steps, n_layer=args.layers, n_head=args.heads,
        d_model=args.d_model, gamma=args.gamma, rtg_bins=args.rtg_bins, batch_size=args.batch_size,
        steps=args.steps, lr=args.lr, seed=args.seed,
    )
    vae_cfg = VAEConfig(steps=args.vae_steps, alpha_quantile=args.alpha_quantile, seed=args.seed)
    mlp_cfg = BackwardMLPConfig(steps=args.vae_steps, seed=args.seed) if args.backward_mlp else None
    train_model(args.dataset, args.out, rt_cfg, vae_cfg, mlp_cfg, progress=not args.no_progress)


def _cmd_augment(args):
    from rtaug.experiments.stages import augment_file
    from rtaug.generate.generation import GenerationConfig

    cfg = GenerationConfig(
        num_trajectories=args.num_trajectories, max_length=args.max_length, candidates=args.candidates,
        kappa=args.kappa, beta=args.beta, start=args.start, truncation=not args.no_truncation,
        fixed_length=args.fixed_length, seed=args.seed,
    )
    augment_file(args.dataset, args.model, args.out, cfg, progress=not args.no_progress)


def _cmd_train_policy(args):
    import json
    from pathlib import Path

    import numpy as np

    from rtaug import algos
    from rtaug.algos.common import infer_domain, offline_action_eval
    from rtaug.data.hdf5 import load_hdf5
    from rtaug.fileio import atomic_write_bytes
    from rtaug.train import CHECKPOINT, train

    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.eval_every is not None and args.eval_every < 1:
        raise ValueError(f"--eval-every must be at least 1, got {args.eval_every}")
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds must be distinct, got {args.seeds}")
    data = load_hdf5(args.dataset)
    if data.discrete_actions:
        raise ValueError(f"{args.dataset}: discrete actions ({data.num_actions} choices); train-policy's "
                         f"learners ({', '.join(algos.ALGOS)}) need continuous (Box) actions")
    domain = args.domain if args.domain != "auto" else infer_domain(data)
    out = Path(args.out) if args.out else Path("runs") / f"{Path(args.dataset).stem}-{args.algo}"
    if (out / CHECKPOINT).exists() and not args.resume:
        raise ValueError(f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it "
                         "or choose another --out")
    n_gen = int(data.generated.sum()) if data.generated is not None else 0
    print(f"{args.algo} on {args.dataset}: {len(data)} transitions ({n_gen} generated), obs {data.obs_dim}, "
          f"act {data.act_dim}, domain {domain}, seeds {list(args.seeds)}, {args.steps} updates -> {out}")

    eval_fn = offline_action_eval(data) if args.eval_every else None
    result = train(data, args.algo, steps=args.steps, seeds=args.seeds, out_dir=out, eval_fn=eval_fn,
                   eval_every=args.eval_every, domain=domain, progress=not args.no_progress,
                   chunk=min(args.chunk, args.steps), resume=args.resume)

    summary = {"algo": result.algo, "dataset": str(args.dataset), "domain": domain, "steps": result.steps,
               "seeds": list(result.seeds), "updates_per_s": result.updates_per_s, "final": {}}
    for s in result.seeds:
        last = dict(result.metrics[s][-1]) if result.metrics[s] else {}
        if result.evaluations[s]:
            last.update({f"eval_{k}": v for k, v in result.evaluations[s][-1].items() if k != "step"})
        summary["final"][str(s)] = last
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items()
                          if k not in ("step", "updates_per_s") and np.isfinite(v))
        print(f"  seed {s}: {shown}")
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    ups = result.updates_per_s
    print(f"done: {result.steps} updates x {len(result.seeds)} seeds"
          + (f", {ups:.0f} updates/s (all seeds)" if np.isfinite(ups) else "")
          + f"; checkpoint, run.json, summary.json and seed_*/metrics.csv in {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtaug", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from rtaug import __version__

    parser.add_argument("--version", action="version", version=f"rtaug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "quickstart", help="RT end to end on BoxBall: table of reliability and the paper's Fig. 4",
        description="Collect BoxBall data with an online DQN, train RT (backward), FT (forward), a one-step "
                    "backward MLP and the reliability VAE, generate 50 trajectories with each (and 50 random-policy "
                    "episodes), audit every generated transition against the true dynamics, print the table and "
                    "write DIR/table.json and DIR/fig4.png.",
    )
    p.add_argument("--out", default="runs/quickstart", metavar="DIR", help="output directory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage (default: %(default)s)")
    p.add_argument("--trajectories", type=int, default=50, help="trajectories per generator (default: %(default)s)")
    _add_progress(p)
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("collect", help="collect a dataset (D4RL-layout HDF5)",
                       description="Collect a dataset by the paper's protocol and write it as D4RL-layout HDF5. "
                                   "boxball: an online DQN's experience, exploration included (20k steps). "
                                   "maze2d-*: D4RL's waypoint controller with noise on gymnasium-robotics "
                                   "PointMaze, in D4RL's coordinates (1M / 2M / 4M steps by default).")
    p.add_argument("task", metavar="TASK", help="boxball or maze2d-{umaze,medium,large}-{sparse,dense} (`rtaug tasks`)")
    p.add_argument("--out", required=True, metavar="FILE", help="output HDF5 file")
    p.add_argument("--steps", type=int, default=None, help="environment steps (default: the task's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeouts", choices=["length", "goal"], default="length",
                   help="maze2d: mark episode ends every episode length (default) or, as D4RL's files, "
                        "where a goal was reached")
    _add_progress(p)
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("audit", help="check a dataset's transitions against the true dynamics",
                       description="Audit every transition of a dataset file (real or generated) against the "
                                   "task's true dynamics: invalid rate and wall crossings (boxball); simulator "
                                   "error and wall rate (maze2d: reset to the state, apply the action, compare "
                                   "with the next state). Split by `generated` when the file has it.")
    p.add_argument("file", metavar="FILE", help="D4RL-layout HDF5 dataset of that task")
    p.add_argument("--task", required=True, help="boxball or a maze2d task")
    p.add_argument("--json", metavar="OUT", help="also write the summary as JSON")
    _add_progress(p)
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("tasks", help="list the tasks and their recipes",
                       description="List the tasks rtaug knows: how each is made, its data recipe, evaluation "
                                   "protocol and reference scores.")
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser("reference", help="measure a maze task's random and expert reference returns",
                       description="Evaluate a random policy and the data-collecting controller on a maze2d task "
                                   "until the standard error of each return is under 1% of their gap.")
    p.add_argument("task", metavar="TASK")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-episodes", type=int, default=10_000)
    p.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    p.set_defaults(func=_cmd_reference)

    p = sub.add_parser(
        "train-model", help="train RT's sequence model and reliability VAE on a dataset file",
        description="Train the sequence model (backward = RT, forward = FT) by teacher forcing on windows of K "
                    "steps, and the reliability VAE whose maximum error on the data is the threshold α. Works on any "
                    "D4RL-layout HDF5 file; integer actions are treated as discrete.",
    )
    p.add_argument("--dataset", required=True, metavar="FILE", help="D4RL-layout HDF5 dataset")
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    p.add_argument("--direction", choices=["backward", "forward"], default="backward",
                   help="backward = RT (Eq. 9-10), forward = FT (Eq. 1-2) (default: %(default)s)")
    p.add_argument("--context-steps", type=int, default=20, help="K, steps per window (default: %(default)s)")
    p.add_argument("--layers", type=int, default=3, help="transformer layers (default: %(default)s)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default: %(default)s)")
    p.add_argument("--d-model", type=int, default=128, help="embedding width (default: %(default)s)")
    p.add_argument("--gamma", type=float, default=0.99, help="discount of the reward-to-go (default: %(default)s)")
    p.add_argument("--rtg-bins", type=int, default=32, help="bins of the reward-to-go head (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="windows per update (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2000, help="updates of the sequence model (default: %(default)s)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default: %(default)s)")
    p.add_argument("--vae-steps", type=int, default=2000, help="updates of the VAE (default: %(default)s)")
    p.add_argument("--alpha-quantile", type=float, default=1.0,
                   help="α = this quantile of the VAE error on the data; 1.0 = the maximum, as in the paper")
    p.add_argument("--backward-mlp", action="store_true", help="also train the one-step backward MLP baseline")
    p.add_argument("--seed", type=int, default=0)
    _add_progress(p)
    p.set_defaults(func=_cmd_train_model)

    p = sub.add_parser(
        "augment", help="generate trajectories with a trained model and write the augmented dataset",
        description="Generate trajectories from the dataset's states with a model from `rtaug train-model`, "
                    "truncate them where Γ > α, penalise rewards by β·Γ/α, and write D_env ∪ D_model as a "
                    "D4RL-layout HDF5 file with `generated`, `reliability` and the generator's config.",
    )
    p.add_argument("--dataset", required=True, metavar="FILE", help="D4RL-layout HDF5 dataset (the model's data)")
    p.add_argument("--model", required=True, metavar="DIR", help="model directory from `rtaug train-model`")
    p.add_argument("--out", required=True, metavar="FILE", help="augmented HDF5 file to write")
    p.add_argument("--num-trajectories", type=int, default=1000, help="H, trajectories to generate (default: %(default)s)")
    p.add_argument("--max-length", type=int, default=10, help="L_max, steps per trajectory (default: %(default)s)")
    p.add_argument("--candidates", type=int, default=4, help="M candidate steps per step (default: %(default)s)")
    p.add_argument("--kappa", type=float, default=5.0, help="κ, strength of the return tilt (default: %(default)s)")
    p.add_argument("--beta", type=float, default=1.0, help="β, reliability penalty on rewards (default: %(default)s)")
    p.add_argument("--start", choices=["auto", "goal", "uniform"], default="auto",
                   help="start states: goal = a trajectory's state of maximal reward; auto = goal backward, "
                        "uniform forward (default: %(default)s)")
    p.add_argument("--no-truncation", action="store_true", help="switch truncation off (always max-length steps)")
    p.add_argument("--fixed-length", type=int, default=None, metavar="N",
                   help="fixed-length ablation: exactly N steps, no truncation (RT-F3: 3, RT-F5: 5)")
    p.add_argument("--seed", type=int, default=0)
    _add_progress(p)
    p.set_defaults(func=_cmd_augment)

    p = sub.add_parser(
        "train-policy", help="train an offline RL policy (BC, TD3+BC, IQL, CQL, BCQ) on a dataset file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model-free offline RL learner on any D4RL-layout HDF5 file, real or augmented\n"
                    "(generated rows are used like real ones: their rewards already carry RT's penalty).\n"
                    "All seeds train at once in one jitted program, with the algorithm's published settings\n"
                    "for the domain. Continuous actions in [-1, 1] only.",
        epilog="Output directory:\n"
               "  run.json              algorithm, full config, seeds, dataset fingerprint\n"
               "  checkpoint.msgpack    latest state of every seed (msgpack, no pickle; written atomically)\n"
               "  seed_<s>/metrics.csv  losses and updates/s, one row per chunk\n"
               "  seed_<s>/eval.csv     with --eval-every: the policy's action MSE to the dataset's actions\n"
               "                        (an offline check; no simulator is attached to a bare file)\n"
               "  summary.json          final metrics per seed\n\n"
               "A killed run continues with --resume (same command) and ends with exactly the parameters\n"
               "of an uninterrupted run.\n\n"
               "Example:\n"
               "  rtaug train-policy --dataset data/maze2d-umaze.hdf5 --algo iql --steps 100000 --seeds 0 1 2",
    )
    p.add_argument("--dataset", required=True, metavar="FILE", help="D4RL-layout HDF5 dataset (augmented or not)")
    p.add_argument("--algo", required=True, choices=["bc", "td3bc", "iql", "cql", "bcq"],
                   help="learner: bc (behaviour cloning), td3bc (TD3+BC, α=2.5), iql (implicit Q-learning), "
                        "cql (conservative Q-learning, SAC-based), bcq (batch-constrained Q-learning)")
    p.add_argument("--steps", type=int, default=100_000,
                   help="gradient updates per seed (default: %(default)s; the papers use 1000000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S",
                   help="seeds, all trained at once (default: 0)")
    p.add_argument("--domain", choices=["auto", "mujoco", "maze2d", "antmaze"], default="auto",
                   help="which published per-domain settings to use (IQL's expectile/temperature/reward "
                        "scaling, CQL's Lagrangian α); auto = from the dataset's metadata or file name, "
                        "else mujoco (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="run directory (default: runs/<dataset name>-<algo>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (without it, an existing run is an error)")
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="evaluate every N updates and at the end (default: no evaluation)")
    p.add_argument("--chunk", type=int, default=1000, metavar="N",
                   help="updates per compiled chunk: the granularity of metrics rows and of the progress "
                        "bar (default: %(default)s)")
    _add_progress(p)
    p.set_defaults(func=_cmd_train_policy)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        # Bad input is the user's to fix: say what and where, without a stack trace.
        print(f"rtaug {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
