"""Every task of the registry is a Gymnasium id, rtaug/<task>-v<version>, made with nothing but
Gymnasium imported; the spec is set and the time limit is the task's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import rtaug.envs  # noqa: F401  (registers the ids)
from rtaug.envs.registration import ENTRY_POINT, task_spec
from rtaug.envs.registry import TASKS, get_task

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_task_has_an_id_derived_from_the_registry():
    for name, task in TASKS.items():
        assert task.gym_id == f"rtaug/{name}-v{task.version}"
        spec = gym.spec(task.gym_id)
        assert spec.entry_point == ENTRY_POINT and spec.kwargs == {"task": name}
        assert spec.max_episode_steps == task.evaluation.max_episode_steps
        assert task.describe()["gym_id"] == task.gym_id  # `rtaug tasks` shows it
    assert task_spec("boxball") == gym.spec("rtaug/boxball-v0")


def test_made_with_only_gymnasium_imported():
    """A fresh interpreter: gymnasium.make("rtaug.envs:ID") imports rtaug.envs itself (Gymnasium 1.x has
    no plugin entry points), and an EnvSpec as Minari stores it makes the env with no registration."""
    ids = [get_task(n).gym_id for n in ("maze2d-umaze-sparse", "maze2d-large-dense", "boxball")]
    code = f"""
import json, sys
import gymnasium as gym
out = {{}}
for env_id in {ids!r}:
    env = gym.make("rtaug.envs:" + env_id)
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        steps += 1
        done = term or trunc
    out[env_id] = {{"spec": env.spec.id, "max": env.spec.max_episode_steps, "steps": steps, "trunc": bool(trunc),
                   "in_space": bool(env.observation_space.contains(obs))}}
spec = gym.spec({ids[2]!r}).to_json()
del gym.registry[{ids[2]!r}]
env = gym.make(gym.envs.registration.EnvSpec.from_json(spec), max_episode_steps=70)
env.reset(seed=0)
n = 0
while not any(env.step(0 if n % 2 else 1)[2:4]):
    n += 1
out["from_spec"] = {{"spec": env.spec.id, "steps": n + 1}}
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for env_id in ids:
        task = get_task(env_id.split("/")[1].rsplit("-v", 1)[0])
        got = out[env_id]
        assert got["spec"] == env_id and got["max"] == task.evaluation.max_episode_steps
        assert got["in_space"]
        if task.family == "maze2d":  # never terminates: the task's time limit ends the episode
            assert got["steps"] == task.evaluation.max_episode_steps and got["trunc"]
    # make(..., max_episode_steps=N) means N: the env keeps no limit of its own (BoxBall's is 50)
    assert out["from_spec"] == {"spec": ids[2], "steps": 70}


def test_make_env_keeps_its_own_limit():
    env = get_task("boxball").make_env()
    assert env.max_episode_steps == 50
    with pytest.raises(Exception, match="unknown task"):
        gym.make(gym.spec("rtaug/boxball-v0"), task="boxbal")
