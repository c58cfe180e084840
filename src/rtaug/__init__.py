"""rtaug: the Reliability-guaranteed Transformer (RT) for model-based offline RL.

Layers, each a subpackage with one job:
  data/      the dataset type, validation, D4RL-style HDF5 I/O, episodes, windows, reward-to-go
  envs/      BoxBall (paper Fig. 4) and the audits against true dynamics
  collect/   dataset collection (DQN on BoxBall)
  nets/      the causal transformer, the reliability VAE, MLPs
  generate/  RT training and generation (reliability Γ, truncation U, penalty), baselines
"""

__version__ = "0.1.0"
