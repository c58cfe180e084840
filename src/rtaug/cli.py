"""The `rtaug` command line: the quickstart and the pipeline stages, each with its own --help."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtaug.ranges import COUNT, NONNEGATIVE, SEED
from rtaug.requests import DIR, In, Num, Out, RequestError, TaskOf, check_request, flags_of, read_dataset

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
  rtaug train-policy --dataset data/umaze.hdf5 --algo iql --seeds 0 1 2 --task maze2d-umaze-sparse
  rtaug eval --run runs/umaze-iql                   # D4RL protocol, IQM and 95% CI over seeds
  rtaug run configs/cpu/table2.yaml task=maze2d-umaze-sparse generator.kind=rt   # one experiment
  rtaug sweep configs/cpu/table2.yaml && rtaug report runs/table2                 # a grid on Ray
"""


def _add_progress(p):
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (logs still print)")


def _add_overwrite(p):
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (atomically: the old one stays until the new one is complete)")


def _add_config_args(p, metavar: str, what: str):
    p.add_argument("config", metavar=metavar, help=what)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override any config field (in every cell), e.g. learner.steps=50000 (value parsed as YAML)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<config name>)")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="stage cache, shared between runs (default: $RTAUG_CACHE or runs/cache)")


def _cmd_quickstart(args):
    from rtaug.experiments.quickstart import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig(seed=args.seed, trajectories=args.trajectories)
    cfg.dqn.seed = args.seed
    run_quickstart(cfg, out=args.out, progress=not args.no_progress)


def _cmd_collect(args):
    from rtaug.envs.registry import get_task
    from rtaug.experiments.stages import collect

    sac = _key_values(args.sac, "--sac") if args.sac else {}
    if args.sac_dir is not None:
        sac["sac_dir"] = args.sac_dir
    if sac and get_task(args.task).family != "mujoco":
        raise ValueError("--sac and --sac-dir apply to the SAC-made tasks (hopper-*, walker2d-*, halfcheetah-*)")
    collect(args.task, args.out, steps=args.steps, seed=args.seed, timeouts=args.timeouts,
            progress=not args.no_progress, **sac)


def _key_values(items, flag: str) -> dict:
    """KEY=VALUE words as a dict of strings (the callee converts each to its field's type)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _cmd_audit(args):
    import json

    from rtaug.experiments.stages import audit_file

    print(json.dumps(audit_file(args.file, args.task, json_out=args.json, progress=not args.no_progress,
                                real_rows=args.real_rows), indent=2))


def _cmd_describe(args):
    from rtaug.experiments.stages import describe_file, format_description

    print(format_description(describe_file(args.file, args.task, json_out=args.json)))


def _cmd_tasks(args):
    from rtaug.experiments.tasks import show_tasks

    print(show_tasks(args.name, as_json=args.json))


def _cmd_reference(args):
    from rtaug.experiments.tasks import ReferenceRequest, measure_task_references

    measure_task_references(ReferenceRequest(
        task=args.task, seed=args.seed, max_episodes=args.max_episodes, sac_dir=args.sac_dir,
        episodes=args.episodes, json=args.json, progress=not args.no_progress))


def _cmd_train_model(args):
    from rtaug.experiments.stages import ModelRequest, write_model
    from rtaug.generate.baselines import BackwardMLPConfig
    from rtaug.generate.dynamics import DynamicsConfig
    from rtaug.generate.model import RTConfig
    from rtaug.generate.reward import RewardConfig
    from rtaug.generate.train import VAEConfig

    seed = args.seed
    write_model(ModelRequest(
        dataset=args.dataset, out=args.out, progress=not args.no_progress,
        sequence=RTConfig(direction=args.direction, context_steps=args.context_steps, n_layer=args.layers,
                          n_head=args.heads, d_model=args.d_model, gamma=args.gamma, rtg_bins=args.rtg_bins,
                          batch_size=args.batch_size, steps=args.steps, lr=args.lr, seed=seed,
                          matmul=args.matmul),
        vae=VAEConfig(steps=args.vae_steps, alpha_quantile=args.alpha_quantile, seed=seed),
        backward_mlp=BackwardMLPConfig(steps=args.vae_steps, seed=seed) if args.backward_mlp else None,
        dynamics=(DynamicsConfig(members=args.dynamics_members, steps=args.dynamics_steps, seed=seed)
                  if args.dynamics_steps else None),
        reward=(RewardConfig(inputs=args.reward_inputs, steps=args.reward_steps, seed=seed)
                if args.reward_steps else None),
    ))


def _matmul_usable(args):
    # oneDNN is built (seconds, once) and checked before the data are read or a model trained
    if args.matmul != "xla":
        from rtaug.nets import onednn

        usable, why = onednn.available()
        if not usable:
            raise RequestError(f"--matmul {args.matmul}: {why}")


def _enough_rows(args):
    # the sequence model learns from windows of --context-steps rows: fewer cannot fill one, and
    # the statistics the model is fitted to (a 1-row dataset's spread is 0) are meaningless
    data = read_dataset(args.dataset)
    if len(data) < args.context_steps:
        rows = f"{len(data)} row{'' if len(data) == 1 else 's'}"
        raise RequestError(f"--dataset {args.dataset}: {rows}, too few to train on: needs at least --context-steps "
                           f"({args.context_steps}), one window of the sequence model")


def _generation_config(args):
    from rtaug.generate.generation import GenerationConfig

    return GenerationConfig(
        num_trajectories=args.num_trajectories, max_length=args.max_length, candidates=args.candidates,
        kappa=args.kappa, beta=args.beta, start=args.start, truncation=not args.no_truncation,
        fixed_length=args.fixed_length, seed=args.seed, context=args.context, reliability=args.reliability,
        dist=args.dist, alpha_quantile=args.alpha_quantile, alpha_trajectories=args.alpha_trajectories,
        merge=args.merge, tilt=args.tilt, reward=args.reward,
    )


def _model_fits(args):
    """The model directory is whole, has the parts and the window this generation needs, and was
    trained on the dataset's spaces: what augment would find out only after loading it all."""
    from rtaug.experiments.stages import check_model_parts
    from rtaug.generate.io import check_complete, read_config, read_spec
    from rtaug.generate.model import RTConfig

    cfg = _generation_config(args)
    try:
        check_complete(args.model)
        spec = read_spec(args.model)
        window = read_config(Path(args.model) / "rt.json", RTConfig, "sequence model")[0].context_steps
        check_model_parts(args.model, cfg, args.generator)
        spec.check_fits(read_dataset(args.dataset), args.model)
    except (FileNotFoundError, ValueError) as e:  # each message names its file or flag
        raise RequestError(str(e)) from None
    try:
        cfg.context_steps(window)
    except ValueError:
        raise RequestError(f"--context {args.context}: must be less than the model's window, {window} steps "
                           f"(--model {args.model}), to leave a step to generate") from None


def _cmd_augment(args):
    from rtaug.experiments.stages import augment_file

    augment_file(args.dataset, args.model, args.out, _generation_config(args), progress=not args.no_progress,
                 generator=args.generator)


def _cmd_train_policy(args):
    from rtaug.experiments.policy import TrainPolicyRequest, train_policy

    train_policy(TrainPolicyRequest(
        dataset=args.dataset, algo=args.algo, steps=args.steps, seeds=tuple(args.seeds), task=args.task,
        domain=args.domain, out=args.out, resume=args.resume, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes, chunk=args.chunk, matmul=args.matmul, progress=not args.no_progress))


def _cmd_eval(args):
    from rtaug.experiments.policy import EvalRequest, evaluate

    evaluate(EvalRequest(run=args.run, policy=args.policy, policy_fn=args.policy_fn, task=args.task,
                         episodes=args.episodes,
                         seeds=tuple(args.seeds) if args.seeds is not None else None, seed=args.seed,
                         json=args.json, progress=not args.no_progress))


def _cmd_minari_export(args):
    from rtaug.experiments.minari import ExportRequest, export_minari

    export_minari(ExportRequest(file=args.file, id=args.id, task=args.task, root=args.root))


def _cmd_minari_import(args):
    from rtaug.experiments.minari import ImportRequest, import_minari

    import_minari(ImportRequest(source=args.source, out=args.out, task=args.task, frame=args.frame,
                                relabel=args.relabel, root=args.root))


def _command_line(args) -> str:
    """This invocation as a user would retype it (recorded in results, shown by reports)."""
    import shlex

    return shlex.join(["rtaug", *args.argv])


def _cmd_run(args):
    from rtaug.experiments.config import load
    from rtaug.experiments.run import run_experiment

    cfg = load(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    run_experiment(cfg, out, cache=args.cache, progress=not args.no_progress, command=_command_line(args))


def _cmd_sweep(args):
    from rtaug.experiments.sweep import load_sweep, run_sweep

    cells = load_sweep(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    if args.dry_run:  # reads the cache only: no Ray needed
        from rtaug.experiments.sweep import STATES, sweep_status

        status = sweep_status(cells, cache=args.cache)
        for name, cell in status["cells"].items():
            print(f"{name}: {cell['overrides']}")
            print("  " + ", ".join(f"{cell[s]} {s}" for s in STATES if cell[s]))
            for line in cell["unfinished"]:
                print(f"    {line}")
        total = status["stages"]
        print(f"{len(cells)} cells -> {out}; {sum(total.values())} distinct stages: "
              + ", ".join(f"{total[s]} {s}" for s in STATES if total[s]) + f" (cache {status['cache']})")
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError("rtaug sweep runs on Ray, which is not installed: pip install 'rtaug[ray]'") from None
    run_sweep(cells, out, cache=args.cache, address=args.address, workers=args.workers, retries=args.retries,
              command=_command_line(args))


def _cmd_report(args):
    from rtaug.experiments.report import write_report

    if args.name is not None and (not args.name or any(c in args.name for c in "/\\") or args.name.startswith(".")):
        raise ValueError(f"--name {args.name!r}: a file name stem, without directories")
    write_report(args.dir, out=args.out, name=args.name)
    if args.tensorboard is not None:
        from rtaug.experiments.report import write_tensorboard

        write_tensorboard(args.dir, args.tensorboard)


def _heads_divide_width(args):
    # each of the transformer's heads attends over an equal share of the embedding
    if args.d_model % args.heads:
        raise RequestError(f"--d-model {args.d_model}: must be a multiple of --heads {args.heads}")


# The stage cache is shared with other runs and a sweep's workers; a re-run reuses both.
_EXPERIMENT_PATHS = (In("config", noun="config file"), Out("--out", DIR, reuse=True),
                     Out("--cache", DIR, reuse=True, shared=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtaug", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from rtaug import __version__

    parser.add_argument("--version", action="version", version=f"rtaug {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error, show its traceback (before the command: rtaug --debug ...)")
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
    p.set_defaults(func=_cmd_quickstart, paths=(Out("--out", DIR, reuse=True),),
                   checks=(Num("--seed", SEED), Num("--trajectories", COUNT)))

    p = sub.add_parser(
        "run", help="one experiment from a config file: task × generator × learner × seeds, every stage cached",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one experiment: collect the task's data, train the generator's models, generate and\n"
                    "merge (RT, FT, RT-F3/F5, the backward MLP, or none), audit the generated rows against the\n"
                    "simulator, train the learner once per seed and evaluate each policy by the task's protocol.\n"
                    "Every stage is cached under --cache by a hash of what it depends on: a re-run reuses what\n"
                    "is finished, a killed run resumes, a changed field recomputes only what depends on it.\n"
                    "Writes OUT/config.yaml (the config as run) and OUT/result.json.",
        epilog="Config fields (YAML; see configs/ for the protocols' files):\n"
               "  task, seeds, name, protocol\n"
               "  data.{steps, seed, timeouts}; locomotion: data.recipe.<field> (the SAC recipe's),\n"
               "    data.sac_dir (a finished `rtaug collect --sac-dir` run instead of one in the cache;\n"
               "    {env} and {seed} are filled in, e.g. data.sac_dir=runs/sac/{env}-seed{seed})\n"
               "  data.file: your own dataset file (D4RL layout, e.g. from `rtaug minari import`) instead\n"
               "    of making the task's; keyed by its content; the task evaluates and audits\n"
               "  generator.kind: none | rt | ft | rt-f3 | rt-f5 | backward-mlp\n"
               "  generator.model.{sequence, vae, dynamics, reward, backward_mlp}.<field>   (train-model's)\n"
               "  generator.generation.<field>                                            (augment's)\n"
               "  learner.{algo, steps, eval_every, eval_episodes, chunk} and any field of the algorithm's\n"
               "    Config, e.g. learner.expectile for IQL\n"
               "  evaluation.{episodes, seed, audit}\n\n"
               "Examples:\n"
               "  rtaug run configs/cpu/table2.yaml task=maze2d-umaze-sparse generator.kind=rt\n"
               "  rtaug run my.yaml learner.algo=iql learner.expectile=0.9 seeds=[0,1,2] --out runs/iql09\n"
               "  rtaug run configs/cpu/table2.yaml task=maze2d-umaze-sparse generator.kind=rt data.file=data/mine.hdf5 \\\n      --out runs/mine",
    )
    _add_config_args(p, "CONFIG.yaml", "experiment config (YAML)")
    _add_progress(p)
    p.set_defaults(func=_cmd_run, paths=_EXPERIMENT_PATHS)

    p = sub.add_parser(
        "sweep", help="a grid of experiments on Ray (one single-threaded worker per core by default)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every cell of a sweep file: an experiment config with a `grid` section whose keys\n"
                    "are config fields and whose values are lists; the cells are all their combinations.\n"
                    "The stages of all cells form one graph (a stage shared by cells runs once) executed by Ray:\n"
                    "locally one worker per core, each pinned to its core; --address for a cluster. Failed\n"
                    "stages are retried; the summary says what ran, what was cached and what failed.\n"
                    "Writes OUT/<task>/<method>/result.json per finished cell and OUT/sweep.json.",
        epilog="Example:\n"
               "  rtaug sweep configs/cpu/table2.yaml            # BCQ, FT+BCQ, RT+BCQ on the maze tasks\n"
               "  rtaug report runs/table2",
    )
    _add_config_args(p, "SWEEP.yaml", "sweep file (an experiment config with a grid)")
    p.add_argument("--workers", type=int, default=None,
                   help="local Ray workers (default: one per core)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    p.add_argument("--retries", type=int, default=1, help="retries of a failed stage (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells and where each stands (stages cached, running, resumable from a "
                        "killed attempt with a policy's update count, to run), then stop; computes nothing")
    p.set_defaults(func=_cmd_sweep, paths=_EXPERIMENT_PATHS,
                   checks=(Num("--workers", COUNT), Num("--retries", NONNEGATIVE)))

    p = sub.add_parser(
        "report", help="tables, CSV and figures of the results under a directory",
        description="Read every result.json under DIR (of `rtaug run` or `rtaug sweep`) and write report.md "
                    "(per task: mean ± std, IQM with a bootstrap 95% interval, D4RL-normalized mean, the paper's "
                    "number; which data file the rows stand on, by fingerprint, flagged when a task's rows "
                    "stand on different files; the evidence behind each run), results.csv and figures: curves.png (learning "
                    "curves), q.png (the critics' mean Q), lengths.png (generated lengths), scores.png, and the "
                    "generated transitions over the maze walls per run. SAC runs (a locomotion run's sac stage, "
                    "or `rtaug collect --sac-dir` directories under DIR, e.g. `rtaug report runs/sac`) add a table "
                    "of their returns, medium cut and hours, sac.csv and their learning curves, sac.png.",
    )
    p.add_argument("dir", metavar="DIR", help="directory holding result.json files or SAC runs")
    p.add_argument("--out", metavar="DIR", default=None, help="report directory (default: DIR/report)")
    p.add_argument("--name", default=None,
                   help="write NAME.md, NAME.csv and NAME-*.png instead of report.md, results.csv and *.png "
                        "(e.g. --out docs/results --name table2)")
    p.add_argument("--tensorboard", metavar="LOGDIR", default=None,
                   help="also write every run's training metrics and learning curves as TensorBoard events "
                        "under LOGDIR (needs tensorboardX: pip install 'rtaug[tensorboard]')")
    p.set_defaults(func=_cmd_report, paths=(In("dir", DIR), Out("--out", DIR, reuse=True),
                                            Out("--tensorboard", DIR, reuse=True)))

    p = sub.add_parser("collect", help="collect a dataset (D4RL-layout HDF5)",
                       description="Collect a dataset by the paper's protocol and write it as D4RL-layout HDF5. "
                                   "boxball: an online DQN's experience, exploration included (20k steps). "
                                   "maze2d-*: D4RL's waypoint controller with noise on gymnasium-robotics "
                                   "PointMaze, in D4RL's coordinates (1M / 2M / 4M steps by default). "
                                   "hopper-*, walker2d-*, halfcheetah-*: D4RL's locomotion recipe on Gymnasium's "
                                   "MuJoCo v5: SAC trained online in --sac-dir (resumed if killed, reused when "
                                   "finished; one run serves an environment's four datasets), then medium (1M steps "
                                   "of the policy at a third of the expert's return), medium-replay (SAC's replay "
                                   "buffer until then), expert (1M steps of the final policy) or medium-expert "
                                   "(docs/locomotion.md).")
    p.add_argument("task", metavar="TASK", help="boxball, maze2d-{umaze,medium,large}-{sparse,dense} or "
                                                "{hopper,walker2d,halfcheetah}-{medium,medium-replay,expert,"
                                                "medium-expert} (`rtaug tasks`)")
    p.add_argument("--out", required=True, metavar="FILE", help="output HDF5 file")
    p.add_argument("--steps", type=int, default=None, help="environment steps (default: the task's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeouts", choices=["length", "goal"], default=None,
                   help="maze2d: mark episode ends every episode length (the recipe's) or, as D4RL's files, "
                        "where a goal was reached")
    p.add_argument("--sac-dir", metavar="DIR", default=None,
                   help="locomotion: the SAC run directory (default: runs/sac/<env>-seed<seed>)")
    p.add_argument("--sac", nargs="+", metavar="KEY=VALUE", default=None,
                   help="locomotion: recipe fields (sac_steps, medium_fraction, expert_window, expert_return, default_steps) "
                        "and SAC settings (fields of rtaug.collect.sac.SACConfig), e.g. --sac sac_steps=3000 learning_starts=500 "
                        "eval_every=1000 eval_episodes=2 hidden=64,64 for a small run")
    _add_overwrite(p)
    _add_progress(p)
    from rtaug.experiments.config import DataConfig

    p.set_defaults(func=_cmd_collect, paths=(Out("--out"), Out("--sac-dir", DIR, reuse=True)),
                   checks=flags_of(DataConfig, "steps", "seed"))

    p = sub.add_parser("audit", help="check a dataset's transitions against the true dynamics",
                       description="Audit every transition of a dataset file (real or generated) against the "
                                   "task's true dynamics: invalid rate and wall crossings (boxball); simulator "
                                   "error and wall rate (maze2d: reset to the state, apply the action, compare "
                                   "with the next state); simulator error, reward and termination (locomotion: "
                                   "restore qpos/qvel, take the env's step). Split by `generated` when the file "
                                   "has it.")
    p.add_argument("file", metavar="FILE", help="D4RL-layout HDF5 dataset of that task")
    p.add_argument("--task", required=True, help="boxball, a maze2d task or a locomotion task (`rtaug tasks`)")
    p.add_argument("--real-rows", type=int, default=None, metavar="N",
                   help="in a file with generated rows: audit all of them and N of its real rows drawn at random "
                        "(summary key real_sample); default: every row")
    p.add_argument("--json", metavar="OUT", help="also write the summary as JSON")
    _add_overwrite(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_audit, paths=(In("file"), Out("--json")),
                   checks=(TaskOf("file"), Num("--real-rows", COUNT)))

    p = sub.add_parser("describe", help="what a dataset file holds: episodes, returns, the data's own score",
                       description="Rows, episodes (how they end), episode lengths and returns of a D4RL-layout "
                                   "file, the generated rows and their mean reliability Γ when the file has them, "
                                   "and the data's own score: its mean episode return normalised by the task's "
                                   "references (this simulator's, and D4RL's published ones), beside the size of "
                                   "D4RL's file of the same dataset where published. The task is --task, else the "
                                   "one the file records.")
    p.add_argument("file", metavar="FILE", help="D4RL-layout HDF5 dataset")
    p.add_argument("--task", default=None, help="score the data as this task's (default: the task the file records)")
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    _add_overwrite(p)
    p.set_defaults(func=_cmd_describe, paths=(In("file"), Out("--json")), checks=(TaskOf("file"),))

    p = sub.add_parser("tasks", help="list the tasks and their recipes",
                       description="List the tasks rtaug knows, a line each: Gymnasium id, observation and "
                                   "action sizes, evaluation protocol, the reference scores measured here and "
                                   "D4RL's. With NAME, that task in full: how its data are made, its recipe, "
                                   "and the command that measured its references.")
    p.add_argument("name", nargs="?", metavar="NAME", help="show this task in full")
    p.add_argument("--json", action="store_true", help="print the registry entries as JSON instead")
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser("reference", help="measure a task's random and expert reference returns",
                       description="Evaluate a random policy and the data-collecting controller on a maze2d task "
                                   "until the standard error of each return is under 1% of their gap; on a "
                                   "locomotion task, a random policy and the final actor of a SAC run (--sac-dir), "
                                   "--episodes each.")
    p.add_argument("task", metavar="TASK")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-episodes", type=int, default=10_000, help="maze2d: the most episodes per policy")
    p.add_argument("--sac-dir", metavar="DIR", default=None,
                   help="locomotion: the finished SAC run of the task's environment (its final actor is the expert)")
    p.add_argument("--episodes", type=int, default=100, help="locomotion: episodes per policy (default: %(default)s)")
    p.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    _add_overwrite(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_reference, paths=(In("--sac-dir", DIR, "SAC run directory"), Out("--json")),
                   checks=(Num("--seed", SEED), Num("--max-episodes", COUNT), Num("--episodes", COUNT)))

    p = sub.add_parser(
        "train-model", help="train RT's sequence model, reliability VAE, dynamics ensemble and reward model on a "
                            "dataset file",
        description="Train the sequence model (backward = RT, forward = FT) by teacher forcing on windows of K "
                    "steps, the reliability VAE (the paper's DIST, Eq. 8), an ensemble of one-step forward "
                    "dynamics models (the default DIST: its check of each generated step) and a reward model "
                    "(the rewards written on generated steps). α is measured at "
                    "`rtaug augment` time, on real trajectories replayed through the model. Works on any "
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
                   help="recorded α of the VAE alone: this quantile of its error on the data (Γ's α is measured "
                        "by `augment --alpha-quantile`) (default: %(default)s)")
    p.add_argument("--dynamics-members", type=int, default=5,
                   help="members of the forward dynamics ensemble (DIST=forward/disagreement) (default: %(default)s)")
    p.add_argument("--dynamics-steps", type=int, default=3000,
                   help="updates of the dynamics ensemble; 0 = do not train one (then only --dist vae) "
                        "(default: %(default)s)")
    p.add_argument("--reward-steps", type=int, default=4000,
                   help="updates of the reward model, whose predictions are the rewards written on generated "
                        "steps (augment --reward auto/model); 0 = do not train one (then the sequence model's "
                        "reward head writes them) (default: %(default)s)")
    p.add_argument("--reward-inputs", choices=["auto", "next_state", "transition"], default="auto",
                   help="what the reward model reads: next_state = s′ alone (a reward paid for where the step "
                        "leads: mazes, BoxBall); transition = (s, a, s′); auto = next_state when the dataset's "
                        "recorded task pays for the next state, else transition (default: %(default)s)")
    p.add_argument("--backward-mlp", action="store_true", help="also train the one-step backward MLP baseline")
    p.add_argument("--matmul", choices=("xla", "onednn", "onednn-bf16"), default="xla",
                   help="the transformer's matmuls by XLA (default), or through oneDNN in float32 or with "
                        "bfloat16 products (onednn-bf16: this CPU's AMX); generation with the model uses the "
                        "same; needs pip install \"rtaug[onednn]\" and a C++ compiler; docs/performance.md")
    p.add_argument("--seed", type=int, default=0)
    _add_overwrite(p)
    _add_progress(p)
    from rtaug.generate.dynamics import DynamicsConfig
    from rtaug.generate.model import RTConfig
    from rtaug.generate.train import VAEConfig

    p.set_defaults(func=_cmd_train_model, paths=(In("--dataset"), Out("--out", DIR)), checks=(
        *flags_of(RTConfig, "context_steps", "d_model", "gamma", "rtg_bins", "batch_size", "steps", "lr", "seed",
                  n_layer="--layers", n_head="--heads"),
        *flags_of(VAEConfig, steps="--vae-steps", alpha_quantile="--alpha-quantile"),
        *flags_of(DynamicsConfig, members="--dynamics-members"),
        Num("--dynamics-steps", NONNEGATIVE), Num("--reward-steps", NONNEGATIVE),  # 0 = none
        _heads_divide_width, _matmul_usable, _enough_rows))

    p = sub.add_parser(
        "augment", help="generate trajectories with a trained model and write the augmented dataset",
        description="Generate trajectories from the dataset's states with a model from `rtaug train-model`, "
                    "truncate them where Γ > α, penalise rewards by β·Γ/α, and write D_env ∪ D_model as a "
                    "D4RL-layout HDF5 file with `generated`, `reliability` and the generator's config.",
    )
    p.add_argument("--dataset", required=True, metavar="FILE", help="D4RL-layout HDF5 dataset (the model's data)")
    p.add_argument("--model", required=True, metavar="DIR", help="model directory from `rtaug train-model`")
    p.add_argument("--out", required=True, metavar="FILE", help="augmented HDF5 file to write")
    from rtaug.generate.generation import DIST_KINDS, MERGES, RELIABILITY_FORMS, REWARDS, STARTS, TILTS, GenerationConfig

    gd = GenerationConfig()
    p.add_argument("--num-trajectories", type=int, default=1000, help="H, trajectories to generate (default: %(default)s)")
    p.add_argument("--max-length", type=int, default=gd.max_length,
                   help="L_max, the most steps a trajectory may have; may exceed the model's window, whose "
                        "context then slides (default: %(default)s)")
    p.add_argument("--context", type=int, default=None, metavar="C",
                   help="real steps the model sees before generating, kept when its window slides; the same for "
                        "--fixed-length ablations (default: half the model's window)")
    p.add_argument("--candidates", type=int, default=gd.candidates,
                   help="M candidates the return tilt chooses among (default: %(default)s)")
    p.add_argument("--kappa", type=float, default=gd.kappa,
                   help="κ of the return tilt: a candidate is kept with weight exp(κ·R̄); 0 = no tilt "
                        "(default: %(default)s)")
    p.add_argument("--tilt", choices=TILTS, default=gd.tilt,
                   help="trajectory = M whole trajectories per start state, R̄ = the mean reward of each one's "
                        "kept steps on [0, 1]; step = M candidates of every step, R̄ = the step's reward-to-go "
                        "scaled to [0, 1] (backward its candidates share R_{t+1}, so it barely acts) "
                        "(default: %(default)s)")
    p.add_argument("--reward", choices=REWARDS, default=gd.reward,
                   help="generated rewards: model = the model directory's reward model (train-model "
                        "--reward-steps); mean = the sequence model's reward head, its expectation; sample = a draw "
                        "from that head; auto = model where the directory has one, else mean (default: %(default)s)")
    p.add_argument("--beta", type=float, default=gd.beta,
                   help="β of the α-pessimistic reward r − β·s·Γ/α, s = the data's reward range "
                        "(max − min), so β is a fraction of it (default: %(default)s)")
    p.add_argument("--dist", choices=DIST_KINDS, default=gd.dist,
                   help="DIST of a generated step: vae = the paper's VAE reconstruction error (Eq. 8); forward = "
                        "the dynamics ensemble's distance of the step's successor from its prediction; "
                        "disagreement = the ensemble's spread (MOPO) (default: %(default)s)")
    p.add_argument("--reliability", choices=RELIABILITY_FORMS, default=gd.reliability,
                   help="form of the cumulative reliability Γ: paper = Eq. 3 as one softmax row (an average, "
                        "cannot pass α = the data's maximum); window = attention weights times the steps in "
                        "view (a running sum of DIST re-weighted by attention); renormalised = attention mean "
                        "over generated steps times their count; sum = running sum of DIST (default: %(default)s)")
    p.add_argument("--alpha-quantile", type=float, default=gd.alpha_quantile,
                   help="α = this quantile of Γ on real trajectories replayed through the model; 1.0 = their "
                        "maximum, as in the paper, which a long tail of real Γ can put out of reach "
                        "(default: %(default)s)")
    p.add_argument("--alpha-trajectories", type=int, default=gd.alpha_trajectories,
                   help="real trajectories replayed to measure α (default: %(default)s)")
    p.add_argument("--merge", choices=MERGES, default=gd.merge,
                   help="suffix = Eq. 11: each trajectory is written as one episode, generated prefix then the real "
                        "suffix, so every generated transition survives qlearning_dataset-style readers; prefix = "
                        "only the generated steps, each ending in a timeout (default: %(default)s)")
    p.add_argument("--start", choices=STARTS, default="auto",
                   help="start states: goal = a trajectory's state of maximal reward (ties: the latest); rewarded = "
                        "the same among trajectories with a reward above the data's least; arrival = among those, "
                        "the earliest state of maximal reward (where a sparse reward is first earned); uniform = "
                        "any state; auto = goal backward, uniform forward (default: %(default)s)")
    p.add_argument("--no-truncation", action="store_true", help="switch truncation off (always max-length steps)")
    p.add_argument("--fixed-length", type=int, default=None, metavar="N",
                   help="fixed-length ablation: exactly N steps, no truncation (RT-F3: 3, RT-F5: 5)")
    p.add_argument("--generator", choices=["sequence", "backward-mlp"], default="sequence",
                   help="sequence = the directory's sequence model (RT or FT, as trained); backward-mlp = its "
                        "one-step backward MLP baseline (train-model --backward-mlp) (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    _add_overwrite(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_augment,
                   paths=(In("--dataset"), In("--model", DIR, "model directory"), Out("--out")),
                   checks=(*flags_of(GenerationConfig, "num_trajectories", "max_length", "context", "candidates",
                                     "kappa", "beta", "alpha_quantile", "alpha_trajectories", "fixed_length",
                                     "seed"),
                           _model_fits))

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
               "  seed_<s>/eval.csv     with --eval-every: with a task (--task, or the dataset's metadata\n"
               "                        `task`, as `rtaug collect maze2d-*` writes it), return, normalized\n"
               "                        score and success rate over --eval-episodes simulator episodes;\n"
               "                        without one, the policy's action MSE to the dataset's actions\n"
               "                        (an offline check: no simulator is attached to a bare file)\n"
               "  summary.json          final metrics per seed, and the task\n\n"
               "Periodic evaluation is a cheap progress check (10 episodes by default). Report final\n"
               "scores with `rtaug eval --run DIR` (the task's protocol: 100 episodes per seed, with an\n"
               "interval over seeds).\n\n"
               "A killed run continues with --resume (same command) and ends with exactly the parameters\n"
               "of an uninterrupted run.\n\n"
               "Example:\n"
               "  rtaug train-policy --dataset data/umaze.hdf5 --algo iql --steps 100000 --seeds 0 1 2 \\\n"
               "      --task maze2d-umaze-sparse --eval-every 10000\n"
               "  rtaug eval --run runs/umaze-iql",
    )
    p.add_argument("--dataset", required=True, metavar="FILE", help="D4RL-layout HDF5 dataset (augmented or not)")
    p.add_argument("--algo", required=True, choices=["bc", "td3bc", "iql", "cql", "bcq"],
                   help="learner: bc (behaviour cloning), td3bc (TD3+BC, α=2.5), iql (implicit Q-learning), "
                        "cql (conservative Q-learning, SAC-based), bcq (batch-constrained Q-learning)")
    p.add_argument("--steps", type=int, default=100_000,
                   help="gradient updates per seed (default: %(default)s; the papers use 1000000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S",
                   help="seeds, all trained at once (default: 0)")
    p.add_argument("--task", default=None, metavar="TASK",
                   help="maze2d or locomotion task of the data (`rtaug tasks`): periodic evaluation runs in its simulator, "
                        "and a dataset of the wrong shape is refused (default: the dataset's metadata `task` "
                        "if it is a known task, else none)")
    p.add_argument("--domain", choices=["auto", "mujoco", "maze2d", "antmaze"], default="auto",
                   help="which published per-domain settings to use (IQL's expectile/temperature/reward "
                        "scaling, CQL's Lagrangian α); auto = the task's, else from the dataset's metadata "
                        "or file name, else mujoco (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="run directory (default: runs/<dataset name>-<algo>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (without it, an existing run is an error)")
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="evaluate every N updates and at the end (default: no evaluation)")
    p.add_argument("--eval-episodes", type=int, default=None, metavar="N",
                   help="simulator episodes per periodic evaluation, with a task (default: 10, cheap; the "
                        "final report should use `rtaug eval`, 100 episodes)")
    p.add_argument("--chunk", type=int, default=1000, metavar="N",
                   help="updates per compiled chunk: the granularity of metrics rows and of the progress "
                        "bar (default: %(default)s)")
    p.add_argument("--matmul", choices=("xla", "onednn", "onednn-bf16"), default="xla",
                   help="cql and bcq: the networks' matmuls by XLA (default), or through oneDNN in float32 or "
                        "with bfloat16 products (onednn-bf16: this CPU's AMX, ~2.5x the updates/s; needs "
                        "pip install \"rtaug[onednn]\" and a C++ compiler; docs/performance.md)")
    _add_progress(p)
    from rtaug.experiments.policy import TrainPolicyRequest

    p.set_defaults(func=_cmd_train_policy, paths=(In("--dataset"), Out("--out", DIR, reuse="resume")),
                   checks=(*flags_of(TrainPolicyRequest, "steps", "seeds", "eval_every", "eval_episodes", "chunk"),
                           TaskOf("--dataset")))

    p = sub.add_parser(
        "eval", help="evaluate a trained policy, a reference policy or any Python function on a maze2d or "
                     "locomotion task, by D4RL's protocol",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate policies in the task's simulator by D4RL's protocol: N episodes from D4RL's\n"
                    "random starts (default: the task's, 100 or 10), the return of each, and the normalized score\n"
                    "100·(R − R_random)/(R_expert − R_random).\n\n"
                    "The policy is a run of `rtaug train-policy` (--run DIR: each seed's deterministic\n"
                    "policy at the run's checkpoint), a built-in reference (--policy random | controller,\n"
                    "to sanity-check the references: they should score about 0 and 100), or any Python\n"
                    "callable (--policy-fn MODULE:FUNCTION, e.g. a policy trained by d3rlpy): called with a\n"
                    "batch of observations (B, obs_dim) float32 it returns actions (B, act_dim); a function\n"
                    "of one observation (obs_dim,) -> (act_dim,) is detected and called once per observation.\n"
                    "MODULE is imported from the current directory or the Python path (set a model up at\n"
                    "import time); a reset(batch_size) attribute is called before each batch of episodes.\n\n"
                    "Printed per seed: return mean ± std over episodes, normalized mean (with the references\n"
                    "measured in this simulator), D4RL-normalized mean (with D4RL's published references, for\n"
                    "comparison with papers only), success rate (maze: ended within 0.5 of the goal; locomotion:\n"
                    "ran to the time limit without falling). Across seeds:\n"
                    "mean ± std (sample std) of the per-seed means, and their interquartile mean (IQM) with a\n"
                    "95% percentile-bootstrap interval over seeds (none with a single seed).\n"
                    "Every seed plays the same episode starts (from --seed).",
        epilog="Examples:\n"
               "  rtaug eval --run runs/umaze-iql --task maze2d-umaze-sparse --json eval.json\n"
               "  rtaug eval --run runs/umaze-iql --seeds 0 2 --episodes 20\n"
               "  rtaug eval --policy controller --task maze2d-umaze-sparse\n"
               "  rtaug eval --policy-fn my_policy:act --task maze2d-umaze-sparse   # my_policy.py here\n\n"
               "See docs/evaluation.md for what the numbers mean, docs/interop.md for --policy-fn with d3rlpy.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="DIR", help="run directory of `rtaug train-policy` (run.json, checkpoint.msgpack)")
    which.add_argument("--policy", choices=["random", "controller"],
                       help="a built-in reference: uniform random actions, or D4RL's waypoint controller "
                            "without noise (the expert)")
    which.add_argument("--policy-fn", metavar="MODULE:FUNCTION",
                       help="any Python callable observations -> actions (batch or single; see above)")
    p.add_argument("--task", metavar="TASK",
                   help="maze2d or locomotion task (`rtaug tasks`); with --run, default: the task the run was "
                        "trained with (train-policy --task records it)")
    p.add_argument("--episodes", type=int, default=None, metavar="N",
                   help="episodes per seed (default: the task's protocol: 100 on a maze, 10 on a locomotion task)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                   help="with --run: evaluate only these of the run's seeds (default: all); with --policy: "
                        "the reference policy's own random seeds (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode starts (default: %(default)s)")
    p.add_argument("--json", metavar="OUT", help="also write everything (per-episode returns included) as JSON")
    _add_overwrite(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_eval, paths=(In("--run", DIR, "run directory"), Out("--json")),
                   checks=(Num("--episodes", COUNT), Num("--seeds", SEED), Num("--seed", SEED),
                           TaskOf("--run", rewards=False)))

    p = sub.add_parser(
        "minari", help="import a local Minari dataset as HDF5, or export an HDF5 file as a Minari dataset",
        description="Move datasets between rtaug's D4RL-layout HDF5 files and Minari, offline (rtaug never "
                    "downloads). Minari keeps its datasets under a root directory: --root, else the "
                    "MINARI_DATASETS_PATH environment variable, else ~/.minari/datasets.",
    )
    msub = p.add_subparsers(dest="minari_command", metavar="{export,import}")
    msub.required = True
    q = msub.add_parser(
        "export", help="write a D4RL-layout HDF5 file as a new Minari dataset",
        description="Write a D4RL-layout HDF5 file as the Minari dataset DATASET_ID (episodes split at\n"
                    "terminals, timeouts, and wherever rows stop being contiguous). With a task (--task, or the\n"
                    "one the file records) the dataset carries the task's env_spec (rtaug/<task>-v<N>: Minari's\n"
                    "recover_environment() and d3rlpy.datasets.get_minari make the env from it) and its measured\n"
                    "reference returns (ref_min_score, ref_max_score); an augmented file's generated and\n"
                    "reliability columns become step infos. An existing id is an error: Minari datasets are\n"
                    "never overwritten. See docs/interop.md.",
        epilog="Example: rtaug minari export data/umaze-rt.hdf5 --id rtaug/umaze-rt-v0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("file", metavar="FILE", help="D4RL-layout HDF5 dataset")
    q.add_argument("--id", required=True, metavar="DATASET_ID", help="Minari id to create, e.g. rtaug/umaze-sparse-v0")
    q.add_argument("--root", metavar="DIR", help="Minari root directory (default: MINARI_DATASETS_PATH or "
                                                 "~/.minari/datasets)")
    q.add_argument("--task", metavar="TASK", help="the task the data belong to (`rtaug tasks`; default: the one the file "
                                                  "records): checked against the data, written as the env_spec")
    q.set_defaults(func=_cmd_minari_export, paths=(In("file"), Out("--root", DIR, reuse=True, shared=True)),
                   checks=(TaskOf("file"),))
    q = msub.add_parser(
        "import", help="read a local Minari dataset into a D4RL-layout HDF5 file",
        description="Read a Minari dataset (an id under the Minari root, or a dataset directory) and write\n"
                    "it as a D4RL-layout HDF5 file: one row per step, next_observations from the episode,\n"
                    "terminals/timeouts from terminations/truncations; dict observations (PointMaze's)\n"
                    "contribute their 'observation' entry, the goal goes to infos/goal; generated and\n"
                    "reliability step infos become those columns.\n\n"
                    "The dataset's env_spec says which task the data belong to and in which frame: one of\n"
                    "rtaug's ids (D4RL's frame), or gymnasium-robotics' PointMaze on one of D4RL's mazes (its\n"
                    "frame, mapped into D4RL's; reward type from the env_spec). --task and --frame are needed\n"
                    "only where it cannot tell (no env_spec, another env), and are refused where they\n"
                    "contradict it. See docs/interop.md.",
        epilog="Examples:\n"
               "  rtaug minari import rtaug/umaze-sparse-v0 --out data/umaze.hdf5\n"
               "  rtaug minari import D4RL/pointmaze/umaze-v2 --out data/pm.hdf5 --relabel",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("source", metavar="DATASET_ID_OR_DIR", help="Minari dataset id, or a dataset directory")
    q.add_argument("--out", required=True, metavar="FILE", help="HDF5 file to write")
    q.add_argument("--root", metavar="DIR", help="Minari root directory (default: MINARI_DATASETS_PATH or "
                                                 "~/.minari/datasets)")
    q.add_argument("--task", metavar="TASK", help="task the data belong to (default: the one the env_spec names): "
                                                  "checks sizes, records it in the file's metadata (train-policy "
                                                  "then evaluates in its simulator)")
    q.add_argument("--frame", choices=["d4rl", "gymnasium-robotics"], default=None,
                   help="coordinate frame of the stored data, for a maze task, when the env_spec cannot tell "
                        "(default: the env_spec's); gymnasium-robotics (PointMaze's) is mapped into D4RL's")
    q.add_argument("--relabel", action="store_true",
                   help="recompute rewards for the maze task's reward type and D4RL's evaluation goal")
    _add_overwrite(q)
    q.set_defaults(func=_cmd_minari_import, paths=(In("--root", DIR, "Minari root directory"), Out("--out")))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    command = args.command + (f" {args.minari_command}" if args.command == "minari" else "")
    try:
        check_request(args)
    except RequestError as e:
        print(f"rtaug {command}: error: {e}", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        if args.debug:
            raise
        # Bad input is the user's to fix: say what and where, without a stack trace.
        print(f"rtaug {command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError as e:
        if _stdout_closed():
            return 0  # the reader of our output stopped early (`rtaug tasks | head`): nothing went wrong
        return _unexpected(args, command, e)
    except Exception as e:  # noqa: BLE001 - the last resort: one line, or the traceback under --debug
        return _unexpected(args, command, e)
    return 0


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports an error on it); if
    so, point it at /dev/null so that the interpreter's own flush at exit does not fail again."""
    import os
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        closed = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, ValueError, OSError):
        return False  # not a real file (a test's capture) or no poll here: not ours to judge
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return closed


def _unexpected(args, command: str, e: Exception) -> int:
    """An error that is not the user's input: one line, or the traceback under --debug."""
    if args.debug:
        raise e
    said = " ".join(str(e).split())  # one line, whatever the exception's message looks like
    print(f"rtaug {command}: error: {type(e).__name__}: {said} (rerun with --debug for the traceback)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
