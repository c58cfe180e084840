"""The task registry: one place that knows, per task, how to make its env, how its data is made,
how it is evaluated, its reference scores, and its Gymnasium id.

Tasks: `maze2d-{umaze,medium,large}-{sparse,dense}` (D4RL's Maze2D rebuilt on
gymnasium-robotics' PointMaze, see `rtaug.envs.maze2d`), `boxball` (the paper's Fig. 4 grid,
`rtaug.envs.boxball`) and `{hopper,walker2d,halfcheetah}-{medium,medium-replay,expert,medium-expert}`
(D4RL's locomotion datasets made by SAC on Gymnasium's MuJoCo v5, `rtaug.envs.locomotion`; family
"mujoco", D4RL's and the learners' name for the locomotion domain). Every task answers the same
questions: `make_env`, `collect` (its data recipe), `audit_file` (its true dynamics against a
file), its evaluation protocol and references.

Reference scores (`random`, `expert`) are returns *measured in this simulator* by the command
stored beside them; D4RL's published ones do not transfer (the same controller scores far more
here than D4RL's published expert return). A task whose references have not been measured keeps
them as None, and normalising its scores raises an error that names the command to run.
D4RL's published references (d4rl/infos.py) are kept separately, for comparison with the paper.

Every task is a Gymnasium environment, `rtaug/<task>-v<version>` (`Task.gym_id`; registered from
this table by `rtaug.envs.registration`). The version starts at 0 and is raised whenever a change
alters what an episode does (dynamics, reward, start states, observations, time limit), so that data
and scores recorded under one id stay comparable (docs/interop.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass

import numpy as np

__all__ = [
    "TaskError", "DataRecipe", "EvalProtocol", "References", "Task", "MazeTask", "BoxBallTask",
    "LocomotionRecipe", "LocomotionTask", "SIMULATED", "TASKS", "task_names", "get_task", "normalized_score",
]


# The families whose tasks have a simulator to evaluate policies in (rtaug eval, train-policy --task).
SIMULATED = ("maze2d", "mujoco")


class TaskError(ValueError):
    """Unknown task, missing reference scores, or data that does not fit the task."""


@dataclass(frozen=True)
class DataRecipe:
    """D4RL's Maze2D data protocol (scripts/generation/generate_maze2d_datasets.py, --noisy)."""

    episode_length: int                # a timeout every `episode_length` rows; also the goal's time budget
    default_steps: int                 # 1M / 2M / 4M
    noise_std: float = 0.5             # Gaussian action noise, then clipped to [-1, 1]
    p_gain: float = 10.0               # PD controller: a = p·(waypoint − pos) + d·vel
    d_gain: float = -1.0
    solve_thresh: float = 0.1          # a waypoint / the goal counts as reached within this distance ...
    vel_thresh: float = 0.1            # ... when the point moved less than this since the last step
    waypoint_jitter: float = 0.2       # intermediate waypoints: cell − U(0, jitter) per axis
    timeouts: str = "length"           # "length": every episode_length rows; "goal": at goal arrivals (D4RL's files)
    reward_on: str = "next"            # reward of the state after the step ("current": D4RL's off-by-one)


@dataclass(frozen=True)
class EvalProtocol:
    episodes: int = 100
    max_episode_steps: int = 300


@dataclass(frozen=True)
class References:
    random: float | None = None        # mean return of uniform random actions, measured here
    expert: float | None = None        # mean return of the noise-free waypoint controller heading to G
    random_se: float | None = None     # standard errors of the two means
    expert_se: float | None = None
    episodes: tuple[int, int] | None = None  # (random, expert) episodes behind the means
    command: str = ""                  # how they were measured
    d4rl_random: float | None = None   # D4RL's published references (d4rl/infos.py), not measured here
    d4rl_expert: float | None = None


@dataclass(frozen=True, kw_only=True)
class Task:
    """What every task knows; a family's subclass adds how its env, data and audit are made."""

    name: str
    family: str
    obs_dim: int
    act_dim: int  # continuous: the action's size; discrete: the number of actions
    evaluation: EvalProtocol
    references: References = field(default_factory=References)
    discrete_actions: bool = False
    summary: str = ""  # one line for `rtaug tasks`
    version: int = 0  # of the Gymnasium id: raised when what an episode does changes

    @property
    def gym_id(self) -> str:
        """The task's Gymnasium id, e.g. rtaug/maze2d-umaze-sparse-v0."""
        return f"rtaug/{self.name}-v{self.version}"

    @property
    def reward_of_next_state(self) -> bool:
        """Whether the data's reward is a function of the state after the step alone."""
        return False

    def require(self, family, what: str) -> None:
        """Refuse this task where only `family`'s tasks (a family or a tuple of them) are supported
        (`what`: the command or feature)."""
        families = (family,) if isinstance(family, str) else tuple(family)
        if self.family not in families:
            raise TaskError(f"task {self.name!r}: {what} supports {' and '.join(families)} tasks only "
                            f"({', '.join(n for n, t in TASKS.items() if t.family in families)})")

    def normalize(self, returns):
        """100·(R − R_random)/(R_expert − R_random) with this task's measured references."""
        ref = self.references
        if ref.random is None or ref.expert is None:
            raise TaskError(f"task {self.name!r}: reference scores have not been measured yet"
                            + (f"; run `{ref.command}` and store them in rtaug/envs/registry.py" if ref.command else ""))
        return normalized_score(returns, ref.random, ref.expert)

    def normalize_d4rl(self, returns):
        """The score under D4RL's published references (for comparison with papers only)."""
        ref = self.references
        if ref.d4rl_random is None or ref.d4rl_expert is None:
            raise TaskError(f"task {self.name!r}: D4RL publishes no reference scores for it")
        return normalized_score(returns, ref.d4rl_random, ref.d4rl_expert)

    def check_dataset(self, dataset) -> None:
        """Refuse a dataset whose observation or action size does not match this task."""
        if dataset.observations.ndim != 2 or dataset.obs_dim != self.obs_dim:
            raise TaskError(f"{dataset.source}: key 'observations': task {self.name!r} has "
                            f"{self.obs_dim}-dimensional observations, the dataset has "
                            f"shape {dataset.observations.shape}")
        if self.discrete_actions:
            if not dataset.discrete_actions or dataset.num_actions > self.act_dim:
                raise TaskError(f"{dataset.source}: key 'actions': task {self.name!r} has {self.act_dim} "
                                f"discrete actions, the dataset's are {dataset.actions.dtype} of shape "
                                f"{dataset.actions.shape}")
        elif dataset.discrete_actions or dataset.act_dim != self.act_dim:
            raise TaskError(f"{dataset.source}: key 'actions': task {self.name!r} has "
                            f"{self.act_dim}-dimensional continuous actions, the dataset has "
                            f"shape {dataset.actions.shape} ({dataset.actions.dtype})")

    def describe(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = asdict(value) if is_dataclass(value) else value
        out["gym_id"] = self.gym_id
        return out


@dataclass(frozen=True, kw_only=True)
class MazeTask(Task):
    """D4RL's Maze2D on gymnasium-robotics' PointMaze: observations [x, y, vx, vy], 2-d actions."""

    maze: str
    reward_type: str
    recipe: DataRecipe

    @property
    def reward_of_next_state(self) -> bool:
        return self.recipe.reward_on == "next"

    def make_env(self, **kwargs):
        from rtaug.envs.maze2d import Maze2DEnv

        kwargs.setdefault("max_episode_steps", self.evaluation.max_episode_steps)
        return Maze2DEnv(self.maze, self.reward_type, **kwargs)

    @property
    def layout(self):
        from rtaug.envs.maze2d import get_layout

        return get_layout(self.maze)

    def collect(self, steps: int | None = None, seed: int = 0, progress: bool = True, **recipe_overrides):
        """D4RL's protocol: the noisy waypoint controller for `steps` rows (default: the recipe's)."""
        from rtaug.collect.waypoint import collect_maze2d

        return collect_maze2d(self, steps=steps, seed=seed, progress=progress, **recipe_overrides)

    def audit_file(self, path, json_out=None, progress: bool = True, real_rows: int | None = None) -> dict:
        """Every transition replayed in the simulator (reset to s, apply a, compare with s′); with
        `real_rows`, the generated ones and that many real ones (`rtaug.envs.audit.real_sample`)."""
        from rtaug.envs.maze_audit import audit_maze_file

        return audit_maze_file(path, self, json_out=json_out, progress=progress, real_rows=real_rows)


@dataclass(frozen=True, kw_only=True)
class BoxBallTask(Task):
    """The paper's Fig. 4 grid: a ball on 10×10 cells, a wall in front of the goal."""

    @property
    def reward_of_next_state(self) -> bool:
        return True  # 1 on arriving at the goal

    def make_env(self, **kwargs):
        from rtaug.envs.boxball import BoxBallEnv

        kwargs.setdefault("max_episode_steps", self.evaluation.max_episode_steps)
        return BoxBallEnv(**kwargs)

    def collect(self, steps: int | None = None, seed: int = 0, progress: bool = True, **recipe):
        """An online DQN's experience, exploration included (20,000 steps by default)."""
        from rtaug.collect.dqn import DQNConfig, collect_boxball

        if recipe:
            raise ValueError(f"collect boxball: {', '.join(recipe)} is a maze2d recipe field; BoxBall has none")
        if steps is not None and steps < 1:
            raise ValueError(f"collect boxball: steps must be positive, got {steps}")
        return collect_boxball(DQNConfig(total_steps=20_000 if steps is None else steps, seed=seed),
                               progress=progress)

    def audit_file(self, path, json_out=None, progress: bool = True, real_rows: int | None = None) -> dict:
        """Invalid moves, wall crossings and off-grid steps of every transition (exact dynamics, and
        fast: `real_rows` is not needed and ignored)."""
        from rtaug.envs.audit import audit_boxball_file

        return audit_boxball_file(path, json_out=json_out)


@dataclass(frozen=True)
class LocomotionRecipe:
    """D4RL's locomotion recipe (D4RL §5): one SAC run per environment, trained online to its
    budget; the datasets are cut out of it (`rtaug.collect.locomotion`)."""

    env_id: str                        # the Gymnasium environment (v5)
    dataset: str                       # medium | medium-replay | expert | medium-expert
    default_steps: int = 1_000_000     # rows drawn from the medium / expert policy (D4RL's 1M each)
    sac_steps: int = 1_000_000         # SAC's budget in environment steps; its final actor is the expert
    medium_fraction: float = 1 / 3     # medium: the first evaluation whose return reaches this share of the expert's
    expert_window: int = 5             # the expert's return for that share: the mean of its last evaluations
    # the expert's return when known beforehand (a finished run's level): the medium cut is then the first
    # evaluation reaching medium_fraction of it, so medium and medium-replay need the run only up to there
    # (D4RL's own recipe: SAC stopped at the medium policy); None = the run's last evaluations
    expert_return: float | None = None


@dataclass(frozen=True, kw_only=True)
class LocomotionTask(Task):
    """hopper / walker2d / halfcheetah: Gymnasium's MuJoCo v5 environment and one D4RL dataset of it."""

    env: str                           # hopper | walker2d | halfcheetah
    recipe: LocomotionRecipe
    d4rl_size: tuple[int, int] | None = None  # (episodes, steps) of D4RL's -v2 file, where published

    def make_env(self, **kwargs):
        from rtaug.envs.locomotion import make_env

        kwargs.setdefault("max_episode_steps", self.evaluation.max_episode_steps)
        return make_env(self.recipe.env_id, **kwargs)

    def collect(self, steps: int | None = None, seed: int = 0, progress: bool = True, sac_dir=None, log=print,
                **overrides):
        """Train (or resume, or reuse) SAC in `sac_dir`, then cut this task's dataset out of the run.
        `overrides`: fields of the recipe or of `rtaug.collect.sac.SACConfig` (sizes for a quick run)."""
        from rtaug.collect.locomotion import collect_locomotion

        return collect_locomotion(self, steps=steps, seed=seed, progress=progress, sac_dir=sac_dir, log=log,
                                  **overrides)

    def audit_file(self, path, json_out=None, progress: bool = True, real_rows: int | None = None) -> dict:
        """Every transition replayed in the simulator (restore qpos/qvel, apply a, compare with s′);
        with `real_rows`, the generated ones and that many real ones."""
        from rtaug.envs.locomotion_audit import audit_locomotion_file

        return audit_locomotion_file(path, self, json_out=json_out, progress=progress, real_rows=real_rows)

    def relabel_file(self, path, out_path, progress: bool = True) -> dict:
        """A copy of an augmented file whose generated rows take the simulator's next state, reward
        and termination (RT's penalty kept): the diagnostic `generator.relabel=simulator`."""
        from rtaug.envs.locomotion_audit import relabel_locomotion_file

        return relabel_locomotion_file(path, out_path, self, progress=progress)

    def measure_references(self, sac_dir, seed: int = 0, episodes: int = 100, progress: bool = True) -> dict:
        """Random (uniform actions) and expert (the SAC run's final actor) returns of this environment."""
        from rtaug.collect.locomotion import measure_references

        return measure_references(self, sac_dir, seed=seed, episodes=episodes, progress=progress)


def normalized_score(returns, random: float, expert: float):
    r = np.asarray(returns, dtype=np.float64)
    out = 100.0 * (r - random) / (expert - random)
    return float(out) if out.ndim == 0 else out


_EPISODE_LENGTH = {"umaze": 300, "medium": 600, "large": 800}
_DEFAULT_STEPS = {"umaze": 1_000_000, "medium": 2_000_000, "large": 4_000_000}

# D4RL's published reference returns, d4rl/infos.py (maze2d-*-v1 and maze2d-*-dense-v1).
_D4RL_REFS = {
    ("umaze", "sparse"): (23.85, 161.86),
    ("medium", "sparse"): (13.13, 277.39),
    ("large", "sparse"): (6.7, 273.99),
    ("umaze", "dense"): (68.537689, 193.66285642381482),
    ("medium", "dense"): (44.264742, 297.4552547777125),
    ("large", "dense"): (30.569041, 303.4857382709002),
}

# Measured here by `_reference_command(maze)` (rtaug.evaluate.measure_references, seed 0, gymnasium-
# robotics 1.4.2 / mujoco 4.0.0; docs/maze2d.md). Sparse and dense come from the same
# rollouts (the reward depends on the position only), so one command measures both of a maze.
# (random mean, its SE, expert mean, its SE, random episodes, expert episodes); SEs < 1% of the gap.
_MEASURED: dict[tuple[str, str], tuple[float, float, float, float, int, int]] = {
    ("umaze", "sparse"): (26.2664, 1.6513, 222.4910, 1.7227, 1100, 1000),
    ("umaze", "dense"): (70.0128, 1.6354, 234.8162, 1.4895, 1100, 1000),
    ("medium", "sparse"): (16.8290, 1.6439, 426.1820, 2.7745, 1000, 1000),
    ("medium", "dense"): (43.4067, 2.4081, 440.8812, 2.6483, 1000, 1000),
    ("large", "sparse"): (9.1000, 1.2465, 559.1570, 3.5376, 1000, 1000),
    ("large", "dense"): (35.6372, 2.5588, 579.9532, 3.4575, 1000, 1000),
}


# D4RL's published locomotion references (d4rl/infos.py, the -v2 datasets).
_D4RL_LOCOMOTION_REFS = {"hopper": (-20.272305, 3234.3), "halfcheetah": (-280.178953, 12135.0),
                         "walker2d": (1.629008, 4592.3)}
_LOCOMOTION_DIMS = {"hopper": (11, 3), "walker2d": (17, 6), "halfcheetah": (17, 6)}
# The -v2 files' sizes, (episodes, steps), as public copies of their statistics give them (the
# hopper and walker2d counts are approximate there): what our data are compared with.
_D4RL_LOCOMOTION_SIZES = {
    "halfcheetah-medium-replay": (202, 202_000), "hopper-medium-replay": (2_040, 402_000),
    "walker2d-medium-replay": (1_090, 302_000), "halfcheetah-medium": (1_000, 1_000_000),
    "hopper-medium": (2_190, 1_000_000), "walker2d-medium": (1_190, 1_000_000),
}
# Measured here by `_locomotion_reference_command(env)` once the environment's SAC expert exists:
# (random mean, its SE, expert mean, its SE, random episodes, expert episodes). walker2d: the final
# actor of a 1M-step SAC run whose evaluations were flat (3,900-4,300) over its last 500k steps
# (Walker2d-v5, gymnasium 1.4.0, mujoco 4.0.0, 2026-12-04). halfcheetah: the final actor of a
# 1M-step SAC run still rising slowly (9,815 at 800k, 10,334 at 1M: 85% of D4RL's expert;
# HalfCheetah-v5, same versions, 2026-12-04); its episodes never end early, so the expert's 100
# returns agree within ±1%. hopper: the final actor of its second seed's 1M-step run, at 3,150-3,280
# in most evaluations after 200k steps (Hopper-v5, same versions, 2026-12-06); the first seed's run
# did not converge (its evaluations swing between 800 and 3,100, docs/locomotion.md).
_LOCOMOTION_MEASURED: dict[str, tuple[float, float, float, float, int, int]] = {
    "walker2d": (1.3068, 0.5050, 4383.8272, 2.1244, 100, 100),
    "halfcheetah": (-290.5194, 7.6720, 10291.8811, 10.1053, 100, 100),
    "hopper": (18.5854, 2.4230, 3272.3547, 3.6379, 100, 100),
}
# The SAC seed whose run is an environment's expert, and so its data's source.
_LOCOMOTION_EXPERT_SEED = {"walker2d": 0, "halfcheetah": 0, "hopper": 1}


def _locomotion_reference_command(env: str) -> str:
    seed = _LOCOMOTION_EXPERT_SEED[env]
    return f"rtaug reference {env}-medium --sac-dir runs/sac/{env}-seed{seed}"


def _reference_command(maze: str) -> str:
    return (f"python -c \"from rtaug.evaluate import measure_references; "
            f"print(measure_references('maze2d-{maze}-sparse', seed=0))\"")


def _build() -> dict[str, Task]:
    tasks = {}
    for maze in ("umaze", "medium", "large"):
        for reward_type in ("sparse", "dense"):
            name = f"maze2d-{maze}-{reward_type}"
            measured = _MEASURED.get((maze, reward_type))
            d4rl_random, d4rl_expert = _D4RL_REFS[(maze, reward_type)]
            random, random_se, expert, expert_se, n_random, n_expert = measured or (None,) * 6
            refs = References(
                random=random, random_se=random_se, expert=expert, expert_se=expert_se,
                episodes=None if measured is None else (n_random, n_expert),
                command=_reference_command(maze),
                d4rl_random=d4rl_random, d4rl_expert=d4rl_expert,
            )
            tasks[name] = MazeTask(
                name=name, family="maze2d", maze=maze, reward_type=reward_type, obs_dim=4, act_dim=2,
                summary=f"D4RL's maze2d-{maze}{'-dense' if reward_type == 'dense' else ''}-v1 rebuilt on "
                        f"gymnasium-robotics' PointMaze ({_DEFAULT_STEPS[maze] // 1_000_000}M steps, "
                        f"{_EPISODE_LENGTH[maze]}-step episodes)",
                recipe=DataRecipe(episode_length=_EPISODE_LENGTH[maze], default_steps=_DEFAULT_STEPS[maze]),
                evaluation=EvalProtocol(episodes=100, max_episode_steps=_EPISODE_LENGTH[maze]),
                references=refs,
            )
    tasks["boxball"] = BoxBallTask(
        name="boxball", family="boxball", obs_dim=2, act_dim=4, discrete_actions=True,
        evaluation=EvalProtocol(episodes=100, max_episode_steps=50),
        summary="10x10 grid with a wall in front of the goal (paper Fig. 4); data by an online DQN")
    from rtaug.envs.locomotion import DATASETS, ENV_IDS, MAX_EPISODE_STEPS

    for env, env_id in ENV_IDS.items():
        measured = _LOCOMOTION_MEASURED.get(env)
        random, random_se, expert, expert_se, n_random, n_expert = measured or (None,) * 6
        d4rl_random, d4rl_expert = _D4RL_LOCOMOTION_REFS[env]
        refs = References(random=random, random_se=random_se, expert=expert, expert_se=expert_se,
                          episodes=None if measured is None else (n_random, n_expert),
                          command=_locomotion_reference_command(env), d4rl_random=d4rl_random,
                          d4rl_expert=d4rl_expert)
        obs_dim, act_dim = _LOCOMOTION_DIMS[env]
        for kind in DATASETS:
            name = f"{env}-{kind}"
            tasks[name] = LocomotionTask(
                name=name, family="mujoco", env=env, obs_dim=obs_dim, act_dim=act_dim,
                recipe=LocomotionRecipe(env_id=env_id, dataset=kind), d4rl_size=_D4RL_LOCOMOTION_SIZES.get(name),
                # 10 episodes: the locomotion papers' protocol (IQL, CQL, TD3+BC, CORL); episodes are 1,000 steps
                evaluation=EvalProtocol(episodes=10, max_episode_steps=MAX_EPISODE_STEPS),
                references=refs,
                summary=f"D4RL's {env}-{kind}-v2 recipe on Gymnasium's {env_id}: data of a SAC run made here "
                        "(medium: stopped at a third of the expert's return; medium-replay: its replay "
                        "buffer until then; expert: trained to the end)")
    return tasks


TASKS: dict[str, Task] = _build()


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name, family: str | None = None, what: str = "this") -> Task:
    """The task called `name` (a Task passes through); an unknown name lists the known ones. With
    `family`, a task of another family is refused too, the message naming `what` refuses it."""
    if isinstance(name, Task):
        task = name
    elif name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    else:
        task = TASKS[name]
    if family is not None:
        task.require(family, what)
    return task
