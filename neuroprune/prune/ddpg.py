"""DDPG agent for layer-wise keep ratios, in the style of AMC (He et al. 2018).

- Actor and critic are MLPs (default 300-300 hidden units, as AMC); the actor ends in a
  sigmoid scaled to ``[a_min, 1]``.
- Target networks follow with soft updates ``theta' <- tau*theta + (1 - tau)*theta'``.
- Exploration: ``warmup`` episodes of uniform random actions, then the actor's action
  plus truncated-normal noise (``sigma`` decaying by ``sigma_decay`` per episode),
  truncated to ``[a_min, 1]``.
- Every step of an episode gets the episode's reward minus a moving-average baseline.
- All randomness comes from generators seeded per episode, so a search resumed from a
  checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["DDPGConfig", "DDPGAgent", "ReplayBuffer"]


@dataclass(frozen=True)
class DDPGConfig:
    """Hyper-parameters (defaults from AMC unless noted)."""

    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    gamma: float = 1.0  # the reward arrives at the episode's end; AMC uses no discount
    warmup: int = 100
    sigma: float = 0.5
    sigma_decay: float = 0.95
    batch_size: int = 64
    buffer_size: int = 2000
    updates_per_episode: int = 0  # 0: one update per transition added
    baseline_decay: float = 0.95
    a_min: float = 0.2


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))


class ReplayBuffer:
    """Fixed-size ring buffer of (state, action, reward, next state, done)."""

    def __init__(self, size: int, state_dim: int) -> None:
        self.size = size
        self.state = np.zeros((size, state_dim), dtype=np.float32)
        self.action = np.zeros((size, 1), dtype=np.float32)
        self.reward = np.zeros((size, 1), dtype=np.float32)
        self.next_state = np.zeros((size, state_dim), dtype=np.float32)
        self.done = np.zeros((size, 1), dtype=np.float32)
        self.count = 0

    def add(self, state: np.ndarray, action: float, reward: float, next_state: np.ndarray, done: bool) -> None:
        slot = self.count % self.size
        self.state[slot], self.action[slot], self.reward[slot] = state, action, reward
        self.next_state[slot], self.done[slot] = next_state, float(done)
        self.count += 1

    def __len__(self) -> int:
        return min(self.count, self.size)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        index = rng.integers(0, len(self), size=batch)
        return tuple(torch.as_tensor(a[index]) for a in
                     (self.state, self.action, self.reward, self.next_state, self.done))

    def state_dict(self) -> dict[str, Any]:
        n = len(self)
        return {"count": self.count, **{k: torch.as_tensor(getattr(self, k)[:n].copy()) for k in
                                        ("state", "action", "reward", "next_state", "done")}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        for key in ("state", "action", "reward", "next_state", "done"):
            values = state[key].numpy()
            getattr(self, key)[: len(values)] = values


class DDPGAgent:
    """Actor-critic agent choosing one keep ratio per layer."""

    def __init__(self, state_dim: int, config: DDPGConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        torch.manual_seed(seed)
        self.actor = _mlp(state_dim, config.hidden, 1)
        self.critic = _mlp(state_dim + 1, config.hidden, 1)
        self.actor_target = _mlp(state_dim, config.hidden, 1)
        self.critic_target = _mlp(state_dim + 1, config.hidden, 1)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr_actor)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.lr_critic)
        self.buffer = ReplayBuffer(config.buffer_size, state_dim)
        self.baseline: float | None = None
        self.sigma = config.sigma

    # -- acting ----------------------------------------------------------------------
    def _scale(self, raw: torch.Tensor) -> torch.Tensor:
        a_min = self.config.a_min
        return a_min + (1.0 - a_min) * torch.sigmoid(raw)

    def policy(self, state: np.ndarray) -> float:
        """The actor's deterministic keep ratio for ``state``."""
        with torch.no_grad():
            return float(self._scale(self.actor(torch.as_tensor(state, dtype=torch.float32)[None]))[0, 0])

    def act(self, state: np.ndarray, episode: int, rng: np.random.Generator) -> float:
        """Keep ratio with exploration: uniform during warm-up, then truncated-normal noise."""
        a_min = self.config.a_min
        if episode < self.config.warmup:
            return float(rng.uniform(a_min, 1.0))
        mean = self.policy(state)
        for _ in range(100):  # truncated normal by rejection
            value = rng.normal(mean, self.sigma)
            if a_min <= value <= 1.0:
                return float(value)
        return float(np.clip(mean, a_min, 1.0))

    # -- learning --------------------------------------------------------------------
    def end_episode(self, transitions: list[tuple[np.ndarray, float, np.ndarray, bool]], reward: float,
                    episode: int, rng: np.random.Generator) -> dict[str, float | None]:
        """Store the episode (each step gets ``reward - baseline``), update the
        networks, decay the noise after warm-up. Returns losses for logging."""
        decay = self.config.baseline_decay
        self.baseline = reward if self.baseline is None else decay * self.baseline + (1 - decay) * reward
        advantage = reward - self.baseline
        for state, action, next_state, done in transitions:
            self.buffer.add(state, action, advantage, next_state, done)
        losses: dict[str, float | None] = {"critic_loss": None, "actor_loss": None}
        if episode >= self.config.warmup:
            self.sigma *= self.config.sigma_decay
        if len(self.buffer) < min(self.config.batch_size, 8) or episode < self.config.warmup // 2:
            return losses
        updates = self.config.updates_per_episode or len(transitions)
        for _ in range(updates):
            losses = self._update(rng)
        return losses

    def _update(self, rng: np.random.Generator) -> dict[str, float]:
        state, action, reward, next_state, done = self.buffer.sample(self.config.batch_size, rng)
        with torch.no_grad():
            next_action = self._scale(self.actor_target(next_state))
            target_q = self.critic_target(torch.cat([next_state, next_action], dim=1))
            target = reward + self.config.gamma * (1 - done) * target_q
        q = self.critic(torch.cat([state, action], dim=1))
        critic_loss = nn.functional.mse_loss(q, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        actor_loss = -self.critic(torch.cat([state, self._scale(self.actor(state))], dim=1)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        tau = self.config.tau
        with torch.no_grad():
            for net, target_net in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, tp in zip(net.parameters(), target_net.parameters()):
                    tp.mul_(1 - tau).add_(tau * p)
        return {"critic_loss": float(critic_loss), "actor_loss": float(actor_loss)}

    # -- checkpointing -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "buffer": self.buffer.state_dict(),
            "baseline": self.baseline, "sigma": self.sigma,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.buffer.load_state_dict(state["buffer"])
        self.baseline = state["baseline"]
        self.sigma = float(state["sigma"])
