"""One experiment as one typed config: task × generator × learner × seeds (`rtaug run`).

A config is a tree of dataclasses. It is read from YAML, and every field, nested or not, is
overridden the same way, `section.field=value` (the value parsed as YAML: `seeds=[0,1,2]`,
`learner.expectile=0.9`, `generator.generation.beta=0`). Unknown keys and wrongly typed values
are refused with the key's full path, before any work, and so are values outside a field's
declared range (`rtaug.ranges`: the same rule the command line's flags are checked by).

The learner section holds the training loop's own fields and, beside them, any field of the
chosen algorithm's Config (`learner.expectile` for IQL): they are checked against that class.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rtaug.generate.baselines import BackwardMLPConfig
from rtaug.generate.dynamics import DynamicsConfig
from rtaug.generate.generation import GenerationConfig
from rtaug.generate.model import RTConfig
from rtaug.generate.reward import RewardConfig
from rtaug.generate.train import VAEConfig
from rtaug.ranges import COUNT, SEED, check_ranges, field_problem, ranged

# The generators an experiment compares (paper §5): none = the real data alone; rt = backward
# generation with reliability truncation; ft = the same machinery run forward; rt-f3 / rt-f5 =
# RT's model with fixed lengths 3 / 5 and no truncation (Fig. 5); backward-mlp = a one-step
# backward MLP rolled out by itself (Fig. 2).
GENERATORS = ("none", "rt", "ft", "rt-f3", "rt-f5", "backward-mlp")
RELABELS = ("model", "simulator")  # generator.relabel
FIXED_LENGTH = {"rt-f3": 3, "rt-f5": 5}
LEARNER_DATA = ("all", "generated")


class ConfigError(ValueError):
    """A config that cannot be run; the message names the key."""


@dataclass
class DataConfig:
    steps: int | None = ranged(COUNT, None)  # environment steps; None = the task's recipe (D4RL's 1M / 2M / 4M)
    seed: int = ranged(SEED, 0)
    timeouts: str = "length"  # "length" (every episode length) or "goal" (D4RL's files' arrivals); mazes only
    # Locomotion tasks only: fields of the task's LocomotionRecipe (sac_steps, medium_fraction) or of
    # rtaug.collect.sac.SACConfig (learning_starts, eval_every, eval_episodes, hidden, batch_size, ...),
    # e.g. data.recipe.sac_steps=600 for a test; {} = D4RL's recipe (1M SAC steps, 256x256)
    recipe: dict = field(default_factory=dict)
    # Locomotion tasks only: a finished SAC run made by `rtaug collect --sac-dir` to cut the data from
    # instead of training one in the cache; {env} and {seed} are filled in (runs/sac/{env}-seed{seed}
    # serves a grid of environments). It must be this config's run: checked before any work.
    sac_dir: str | None = None
    # A dataset file (D4RL layout: `rtaug collect`'s, `rtaug minari import`'s, D4RL's own, yours) to
    # use as the task's data instead of making it: every other data field is then left unset, and
    # the data stage is keyed by the file's content (`Dataset.fingerprint`), not its path. The task
    # still names the environment that evaluates the policies and audits the generated rows.
    file: str | None = None

    def sac_run(self, env: str) -> str | None:
        return None if self.sac_dir is None else self.sac_dir.format(env=env, seed=self.seed)

    def __post_init__(self):
        check_ranges(self)


@dataclass
class ModelConfig:
    """What `rtaug train-model` trains; the sequence model's direction comes from the generator."""

    sequence: RTConfig = field(default_factory=RTConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    dynamics: DynamicsConfig | None = field(default_factory=DynamicsConfig)
    reward: RewardConfig | None = field(default_factory=RewardConfig)
    backward_mlp: BackwardMLPConfig = field(default_factory=BackwardMLPConfig)  # only for backward-mlp


@dataclass
class GeneratorConfig:
    kind: str = "none"
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(num_trajectories=10_000))
    # trajectories generated from each start state: generation draws num_trajectories start
    # states and samples each this many times (Fig. 2: 50 dataset trajectories, 10 samples each)
    samples_per_start: int = ranged(COUNT, 1)
    # whose next state, reward and termination the generated rows carry: "model" (RT's, the paper)
    # or "simulator" (a diagnostic, locomotion tasks: the same states and actions with the true
    # outcome and RT's penalty; separates the model's errors from where its rows are)
    relabel: str = "model"

    def __post_init__(self):
        check_ranges(self)


@dataclass
class LearnerConfig:
    algo: str = "iql"
    steps: int = ranged(COUNT, 100_000)
    eval_every: int | None = ranged(COUNT, 10_000)  # learning-curve points (cheap evaluations); None = none
    eval_episodes: int = ranged(COUNT, 10)  # episodes per learning-curve point
    chunk: int = ranged(COUNT, 1000)  # updates per compiled chunk
    # what the learner trains on: "all" = the real data and the generated (D_env ∪ D_model);
    # "generated" = only the generator's merged trajectories, D_model (Fig. 2)
    data: str = "all"
    params: dict = field(default_factory=dict)  # fields of the algorithm's Config, given flat in YAML

    def __post_init__(self):
        check_ranges(self)


@dataclass
class EvaluationConfig:
    # final evaluation per seed; None = the task's protocol (mazes 100 episodes, locomotion 10 of 1,000 steps)
    episodes: int | None = ranged(COUNT, None)
    seed: int = ranged(SEED, 0)  # episode starts (shared by every seed and method)
    audit: bool = True  # audit the generated rows against the simulator (evidence in the report)

    def __post_init__(self):
        check_ranges(self)


@dataclass
class ExperimentConfig:
    task: str = "maze2d-umaze-sparse"
    seeds: list = ranged(SEED, default_factory=lambda: [0, 1, 2])  # noqa: RUF009 (a dataclasses.field)
    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    name: str = ""  # label in reports; "" = "<generator>+<algo>"
    protocol: str = ""  # which protocol file this is (configs/<protocol>/), recorded in reports

    def __post_init__(self):
        check_ranges(self)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        gen = self.generator.kind
        if self.generator.relabel != "model":
            gen = f"{gen}-relabelled"
        return self.learner.algo if gen == "none" else f"{gen}+{self.learner.algo}"


# ---------------------------------------------------------------- dict <-> dataclass


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _is_optional(tp) -> tuple[bool, object]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
    return False, tp


_SCALARS = {  # YAML scalar -> field type: (accepts, what the message asks for); bools are not numbers
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _coerce(value, tp, where: str):
    optional, tp = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: may not be null")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp) or tp
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else int
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, int, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp in _SCALARS:
        ok, what = _SCALARS[tp]
        if not ok(value):
            raise ConfigError(f"{where}: expected {what}, got {value!r}")
        return float(value) if tp is float else value
    return value


def from_dict(cls, values: dict, where: str = ""):
    """`cls(**values)` with every key and type checked (nested dataclasses from nested mappings)."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{key}: unknown key (the fields of {cls.__name__} are {', '.join(names)})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    for k, v in kwargs.items():
        problem = field_problem(cls, k, v)
        if problem:
            raise ConfigError(f"{f'{where}.{k}' if where else k}: {problem}, got {v!r}")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a config class's own check (__post_init__)
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def to_dict(obj) -> dict:
    """A config as plain JSON/YAML values (tuples as lists); the learner's params flattened."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = [list(x) if isinstance(x, tuple) else x for x in v]
        elif isinstance(v, dict):
            v = json.loads(json.dumps(v))
        out[f.name] = v
    if isinstance(obj, LearnerConfig):
        out.update(out.pop("params"))
    return out


# ---------------------------------------------------------------- loading and overriding


def _set(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        if node.get(k) is None:
            node[k] = {}
        if not isinstance(node[k], dict):
            raise ConfigError(f"{dotted}: {k} is not a section")
        node = node[k]
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, object]:
    """`key.path=value` -> (key.path, value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{text!r}: an override is key=value, e.g. learner.steps=50000")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: the value {raw!r} is not valid YAML ({exc.problem})") from None
    return key.strip(), value


def _split_learner(values: dict, where: str) -> dict:
    """Move the algorithm's own fields of the learner section into `params`, checking them."""
    from rtaug import algos

    values = dict(values or {})
    own = {f.name for f in dataclasses.fields(LearnerConfig)} - {"params"}
    extra = {k: values.pop(k) for k in list(values) if k not in own and k != "params"}
    params = {**(values.pop("params", None) or {}), **extra}
    algo = values.get("algo", LearnerConfig.algo)
    try:
        module = algos.get(algo)
    except ValueError as exc:
        raise ConfigError(f"{where}.algo: {exc}") from None
    hints = _hints(module.Config)
    for k, v in params.items():
        if k not in hints:
            names = sorted(own) + sorted(hints)
            raise ConfigError(f"{where}.{k}: unknown key (learner fields: {', '.join(names)})")
        params[k] = _coerce(v, hints[k], f"{where}.{k}")
        if problem := field_problem(module.Config, k, params[k]):
            raise ConfigError(f"{where}.{k}: {problem}, got {params[k]!r}")
    values["params"] = params
    return values


def build(values: dict | None = None, overrides=(), source: str = "config") -> ExperimentConfig:
    """An ExperimentConfig from a mapping (a YAML file's) and `key=value` overrides."""
    tree = json.loads(json.dumps(values or {}))
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping of config sections, got {type(values).__name__}")
    given = set()
    for item in overrides:
        key, value = item if isinstance(item, tuple) else parse_override(item)
        _set(tree, key, value)
        given.add(key)
    _one_cell(tree, given, source)
    tree["learner"] = _split_learner(tree.get("learner"), "learner")
    cfg = from_dict(ExperimentConfig, tree)
    validate(cfg)
    return cfg


def check_grid(grid, source: str) -> None:
    """A sweep's grid: a mapping of field to a non-empty list of that field's values."""
    if not isinstance(grid, dict):
        raise ConfigError(f"{source}: grid: expected a mapping of field: [values]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: grid.{key}: expected a non-empty list of values, got {values!r}")


def _one_cell(tree: dict, given: set, source: str) -> None:
    """A sweep file given to `rtaug run`: its grid must name one cell. An axis of one value is that
    value; an axis of several must be chosen on the command line, else the run would silently be the
    file's defaults, not any cell of its grid."""
    grid = tree.pop("grid", None) or {}
    check_grid(grid, source)
    open_axes = {}
    for key, values in grid.items():
        if key in given:
            continue
        if len(values) == 1:
            _set(tree, key, values[0])
        else:
            open_axes[key] = values
    if open_axes:
        cells = math.prod(len(v) for v in open_axes.values())
        example = " ".join(f"{k}={v[0]}" for k, v in open_axes.items())
        raise ConfigError(f"{source}: a sweep file ({cells} cells over {', '.join(open_axes)}): run it with "
                          f"`rtaug sweep`, or one cell of it by choosing each axis, e.g. `{example}`")


def load(path, overrides=()) -> ExperimentConfig:
    return build(read_yaml(path), overrides, source=str(path))


def read_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections at the top")
    return tree


def validate(cfg: ExperimentConfig) -> None:
    from rtaug.envs.registry import SIMULATED, get_task

    try:
        task = get_task(cfg.task, SIMULATED, "rtaug run")
    except ValueError as exc:
        raise ConfigError(f"task: {exc}") from None
    _validate_data(cfg, task)
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds: must be non-empty and distinct, got {cfg.seeds}")
    if cfg.generator.kind not in GENERATORS:
        raise ConfigError(f"generator.kind: {cfg.generator.kind!r} is not one of {', '.join(GENERATORS)}")
    if cfg.data.timeouts not in ("length", "goal"):
        raise ConfigError(f"data.timeouts: must be 'length' or 'goal', got {cfg.data.timeouts!r}")
    lr = cfg.learner
    if lr.data not in LEARNER_DATA:
        raise ConfigError(f"learner.data: {lr.data!r} is not one of {', '.join(LEARNER_DATA)}")
    if lr.data == "generated" and cfg.generator.kind == "none":
        raise ConfigError("learner.data: 'generated' needs a generator (generator.kind is 'none')")
    for where, matmul in (("learner.matmul", lr.params.get("matmul", "xla")),
                          ("generator.model.sequence.matmul", cfg.generator.model.sequence.matmul)):
        if matmul != "xla":
            from rtaug.nets import onednn

            usable, why = onednn.available()  # builds it now (seconds, once), not in the first worker
            if not usable:
                raise ConfigError(f"{where}: {matmul} is not usable here: {why}")
    if cfg.generator.kind != "none":
        window = cfg.generator.model.sequence.context_steps
        try:
            cfg.generator.generation.context_steps(window)
        except ValueError as exc:
            raise ConfigError(f"generator.generation.context: {exc}") from None
    if cfg.generator.relabel not in RELABELS:
        raise ConfigError(f"generator.relabel: {cfg.generator.relabel!r} is not one of {', '.join(RELABELS)}")
    if cfg.generator.relabel == "simulator":
        if cfg.generator.kind == "none":
            raise ConfigError("generator.relabel: 'simulator' needs a generator (generator.kind is 'none')")
        if task.family != "mujoco":
            raise ConfigError(f"generator.relabel: 'simulator' is for locomotion tasks, not {cfg.task}")
    if cfg.generator.kind in FIXED_LENGTH and cfg.generator.generation.fixed_length not in (None, FIXED_LENGTH[cfg.generator.kind]):
        raise ConfigError(f"generator.generation.fixed_length: {cfg.generator.kind} generates exactly "
                          f"{FIXED_LENGTH[cfg.generator.kind]} steps, got {cfg.generator.generation.fixed_length}")


def _validate_data(cfg: ExperimentConfig, task) -> None:
    if cfg.data.file is not None:
        _validate_data_file(cfg, task)
        return
    if task.family != "mujoco":
        for key in ("recipe", "sac_dir"):
            if getattr(cfg.data, key):
                raise ConfigError(f"data.{key}: only locomotion tasks have a SAC run, not {cfg.task}")
        return
    from rtaug.collect.locomotion import sac_settings

    if cfg.data.timeouts != "length":
        raise ConfigError(f"data.timeouts: a maze setting; {cfg.task}'s episodes end as the environment ends them")
    if task.recipe.dataset == "medium-replay" and cfg.data.steps is not None:
        raise ConfigError(f"data.steps: does not apply to {cfg.task} (SAC's replay buffer up to the medium cut, "
                          "whatever its size); leave it null")
    try:
        _, config = sac_settings(task, cfg.data.seed, cfg.data.recipe)
    except ValueError as exc:
        raise ConfigError(f"data.recipe: {exc}") from None
    if cfg.data.sac_dir is not None:
        from rtaug.collect.sac import finished_run

        try:
            run = cfg.data.sac_run(task.env)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"data.sac_dir: {cfg.data.sac_dir!r} names no field {exc} (it may use {{env}} and {{seed}})") from None
        try:
            finished_run(run, config)
        except ValueError as exc:
            raise ConfigError(f"data.sac_dir: {exc}") from None


def _validate_data_file(cfg: ExperimentConfig, task) -> None:
    """A given data file: readable, of the task's sizes, not another task's, and holding what the
    run will ask of it; refused here, before any stage runs."""
    from rtaug.data.dataset import DatasetError
    from rtaug.data.hdf5 import file_fingerprint, load_hdf5
    from rtaug.envs.registry import TaskError

    defaults = to_dict(DataConfig())
    made = [f"data.{k}" for k, v in to_dict(cfg.data).items() if k != "file" and v != defaults[k]]
    if made:
        raise ConfigError(f"data.file: the file is the data; {', '.join(made)} would make data, leave "
                          f"{'it' if len(made) == 1 else 'them'} unset")
    path = Path(cfg.data.file)
    if not path.is_file():
        raise ConfigError(f"data.file: {path}: no such file")
    try:
        data = load_hdf5(path)
        task.check_dataset(data)
    except (DatasetError, TaskError, OSError) as exc:
        raise ConfigError(f"data.file: {exc}") from None
    if data.recorded_task not in (None, cfg.task):
        raise ConfigError(f"data.file: {path} records task {data.recorded_task!r}, not {cfg.task!r} "
                          "(its rewards and episode ends are that task's)")
    replays = cfg.generator.kind != "none" and (cfg.evaluation.audit or cfg.generator.relabel == "simulator")
    missing = [k for k in ("qpos", "qvel") if k not in data.infos]
    if task.family == "mujoco" and replays and missing:
        raise ConfigError(f"data.file: {path}: key 'infos/{missing[0]}': missing, and the locomotion audit "
                          "and relabel restore the simulator from it (without it: evaluation.audit=false, "
                          "generator.relabel=model)")
    file_fingerprint(path, data)  # the data stage's key, from the copy read here (not a second read)


def digest(obj) -> str:
    """A stable hash of JSON-able content (a stage's key)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


__all__ = ["LEARNER_DATA", "ExperimentConfig", "DataConfig", "ModelConfig", "GeneratorConfig", "LearnerConfig",
           "EvaluationConfig", "ConfigError", "GENERATORS", "RELABELS", "build", "load", "read_yaml", "parse_override",
           "from_dict", "to_dict", "digest", "dump_yaml"]
