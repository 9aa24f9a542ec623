"""A Q-network with a nested (Matryoshka) state representation, on CartPole (gymnasium).

    python examples/recipes/rl_cartpole.py           # 40k environment steps, a few minutes on a CPU

DQN (Mnih et al., 2015) whose hidden state z (32 dims) feeds one Q head per prefix z[:m], m in 2, 4, ..., 32 (an
MRLHead over actions). Every head regresses the same TD target, computed from the target network's full-dim head;
the Matryoshka loss sums the per-head TD errors. The agent acts with the full-dim head while learning; afterwards each
prefix head drives the cart on its own, greedily, and we report its mean return (500 is the maximum).
"""

import copy
import random

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from _common import recipe_args, save_results
from rich.progress import Progress
from torch import nn

from matryoshka import MatryoshkaLoss, MRLHead, nesting_list

args = recipe_args(__doc__, "rl_cartpole", env_steps=40_000, eval_episodes=20, hidden_dim=32)
env_steps = 1500 if args.quick else args.env_steps
eval_episodes = 2 if args.quick else args.eval_episodes
random.seed(args.seed)
np.random.seed(args.seed)
env = gym.make("CartPole-v1")
obs_dim, actions = env.observation_space.shape[0], env.action_space.n
d, nesting = args.hidden_dim, nesting_list(args.hidden_dim, 2)

encoder = nn.Sequential(
    nn.Linear(obs_dim, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, d), nn.ReLU()
)
q_net = nn.Sequential(encoder, MRLHead(d, actions, nesting))  # returns one (batch, actions) tensor per prefix
target_net = copy.deepcopy(q_net)
opt = torch.optim.Adam(q_net.parameters(), lr=5e-4)
gamma, batch_size, warmup, sync_every = 0.99, 128, 1000, 500


def td_error(q_values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber loss of Q(s, a) against y; ``target`` packs (action, y) per row."""
    taken = q_values.gather(1, target[:, :1].long()).squeeze(1)
    return nn.functional.smooth_l1_loss(taken, target[:, 1])


loss_fn = MatryoshkaLoss(td_error, nesting)
buffer: list[tuple] = []
capacity = 50_000
episode_returns, episode_return = [], 0.0
state, _ = env.reset(seed=args.seed)
with Progress(transient=True) as progress:
    task = progress.add_task("DQN", total=env_steps)
    for step in range(env_steps):
        epsilon = max(0.05, 1.0 - step / (0.25 * env_steps))
        if random.random() < epsilon:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                action = int(q_net(torch.as_tensor(state, dtype=torch.float32)[None])[-1].argmax())
        next_state, reward, terminated, truncated, _ = env.step(action)
        if len(buffer) == capacity:
            buffer[step % capacity] = (state, action, reward, next_state, terminated)
        else:
            buffer.append((state, action, reward, next_state, terminated))
        episode_return += reward
        state = next_state
        if terminated or truncated:
            episode_returns.append(episode_return)
            episode_return = 0.0
            state, _ = env.reset()
        if step >= warmup:
            s, a, r, s2, done = (np.array(v) for v in zip(*random.sample(buffer, batch_size), strict=True))
            with torch.no_grad():
                next_q = target_net(torch.as_tensor(s2, dtype=torch.float32))[-1].max(1).values
                y = torch.as_tensor(r, dtype=torch.float32) + gamma * (1 - torch.as_tensor(done).float()) * next_q
            target = torch.stack([torch.as_tensor(a, dtype=torch.float32), y], 1)
            loss = loss_fn(q_net(torch.as_tensor(s, dtype=torch.float32)), target)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(q_net.parameters(), 10.0)
            opt.step()
        if step % sync_every == 0:
            target_net.load_state_dict(q_net.state_dict())
        progress.advance(task)


def evaluate(head_index: int) -> float:
    """Mean return of greedy play with the Q head at ``nesting[head_index]`` (seeded episodes)."""
    returns = []
    for episode in range(eval_episodes):
        s, _ = env.reset(seed=10_000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                q = q_net[1].logits_at(encoder(torch.as_tensor(s, dtype=torch.float32)[None]), head_index)
            s, r, terminated, truncated, _ = env.step(int(q.argmax()))
            total += r
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


returns = {str(m): evaluate(i) for i, m in enumerate(nesting)}
print(f"mean greedy return over {eval_episodes} episodes (max 500), acting on each prefix head:")
for m in nesting:
    print(f"  z[:{m}]{'':<4}{returns[str(m)]:>8.1f}")
fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
ax.plot(episode_returns, lw=0.8)
ax.set_xlabel("training episode")
ax.set_ylabel("return (full-dim head, epsilon-greedy)")
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(args.out / "training_returns.png")
save_results(
    args.out,
    {"nesting": nesting, "greedy_return": returns, "env_steps": env_steps, "training_episodes": len(episode_returns)},
)
