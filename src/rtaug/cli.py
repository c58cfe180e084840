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
    from rtaug.collect.dqn import DQNConfig, collect_boxball
    from rtaug.data.hdf5 import save_hdf5

    cfg = DQNConfig(total_steps=args.steps, seed=args.seed)
    data = collect_boxball(cfg, progress=not args.no_progress)
    save_hdf5(data, args.out)
    print(f"wrote {args.out}: {len(data)} transitions, {data.metadata.get('episodes')} episodes, "
          f"{data.metadata.get('episodes_reaching_goal')} reach the goal")


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
                       description="Collect a dataset by the paper's protocol and write it as D4RL-layout HDF5.")
    p.add_argument("task", choices=["boxball"], help="task (boxball: an online DQN's experience, exploration included)")
    p.add_argument("--out", required=True, metavar="FILE", help="output HDF5 file")
    p.add_argument("--steps", type=int, default=20_000, help="environment steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    _add_progress(p)
    p.set_defaults(func=_cmd_collect)

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
