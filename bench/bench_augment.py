"""Cost of DiffAugment and of the generator EMA next to the v1 networks they serve.

``augment`` with the default policy on 16 images of 128 px against one v1 critic forward
on the same batch (a critic step makes three critic calls plus a double backward, a
generator step one call and a backward); one EMA update of the v1 generator against one
v1 generator forward. ``run()`` returns the figures; as a script it prints them.

One thread: on a shared two-core machine, two-thread timings of millisecond operations
measure the other core's load (a 2 ms augment took 30-90 ms when the second thread
waited for a busy core), not the operation.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import torch

from rxwgan.models import build_critic, build_generator
from rxwgan.train.augment import DEFAULT_POLICY, augment
from rxwgan.train.ema import GeneratorEMA

BATCH, SIDE = 16, 128


def _median_ms(call: Callable[[], object], repeats: int = 15, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _figures()
    finally:
        torch.set_num_threads(threads)


def _figures() -> dict:
    torch.manual_seed(0)
    critic, generator = build_critic("v1"), build_generator("v1")
    images = torch.rand(BATCH, 1, SIDE, SIDE) * 2 - 1
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        critic_ms = _median_ms(lambda: critic(images))
        augment_ms = _median_ms(lambda: augment(images, DEFAULT_POLICY, rng))
        generator_ms = _median_ms(lambda: generator(torch.randn(BATCH, generator.latent_dim)),
                                  repeats=3, warmup=1)
    leaf = images.clone().requires_grad_(True)
    augment_fb_ms = _median_ms(lambda: augment(leaf, DEFAULT_POLICY, rng).sum().backward())
    critic_fb_ms = _median_ms(lambda: critic(leaf).sum().backward(), repeats=5, warmup=1)
    ema = GeneratorEMA(generator, ema_kimg=2.0)
    ema_ms = _median_ms(lambda: ema.update(generator, BATCH))
    return {
        "threads": torch.get_num_threads(), "batch": BATCH, "side": SIDE, "policy": ",".join(DEFAULT_POLICY),
        "v1_critic_forward_ms": round(critic_ms, 2), "augment_ms": round(augment_ms, 2),
        "augment_over_critic_forward": round(augment_ms / critic_ms, 4),
        "v1_critic_forward_backward_ms": round(critic_fb_ms, 2),
        "augment_forward_backward_ms": round(augment_fb_ms, 2),
        "augment_fb_over_critic_fb": round(augment_fb_ms / critic_fb_ms, 4),
        "v1_generator_parameters": sum(p.numel() for p in generator.parameters()),
        "v1_generator_forward_ms": round(generator_ms, 2), "ema_update_ms": round(ema_ms, 3),
        "ema_update_over_generator_forward": round(ema_ms / generator_ms, 5),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
