"""Environments: Mini Pac-Man (``relational_rnn/MiniPacman-v0``)."""

from gymnasium.envs.registration import register, registry

from relational_rnn.envs.pacman import MiniPacman

PACMAN_ENV_ID = "relational_rnn/MiniPacman-v0"

if PACMAN_ENV_ID not in registry:
    # episode length is capped inside the env (max_steps), so no TimeLimit
    register(id=PACMAN_ENV_ID, entry_point="relational_rnn.envs.pacman:MiniPacman")

__all__ = ["MiniPacman", "PACMAN_ENV_ID"]
