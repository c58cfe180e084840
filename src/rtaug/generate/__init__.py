"""RT: the sequence model, its reliability, and generation (plus the one-step baseline).

  spec.py         how each modality is encoded (categorical or Gaussian), fitted on the data
  model.py        the sequence model and its log-likelihood, Eq. 1-2 (forward) / 9-10 (backward)
  train.py        training of the sequence model, and of the VAE with its threshold α (Eq. 8)
  reliability.py  Γ (Eq. 3), truncation U (Eq. 4), the α-pessimistic reward (Eq. 6)
  generation.py   start states, return-tilted candidates (§3.2), batched generation, Eq. 11
  baselines.py    the one-step backward MLP of Fig. 4
  io.py           saving and loading trained generators (JSON + msgpack, no pickle)
"""
