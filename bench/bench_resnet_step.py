"""Seconds per training step at 128 px, batch 16: the ResNet WGAN-GP against the old tool's v1.

A step is one critic step with gradient penalty and one generator step, timed with the
training loop's own functions (``steps.critic_step`` + ``generator_step``), channels-last,
in fp32 and under bf16 autocast (bf16 only where the CPU computes it natively). Both models,
both precisions, one process; the four configurations are interleaved repeat by repeat so a
change in machine load hits all alike, inside ``reused_cpu_memory`` as training's steps run.
The ResNet's width was chosen so that its step costs no more than v1's in both precisions.
"""

from __future__ import annotations

import statistics
import time

import torch

from rxwgan.base.devices import cpu_supports_bf16, reused_cpu_memory
from rxwgan.models import build_critic, build_generator
from rxwgan.train.steps import StepSettings, critic_step, generator_step

BATCH = 16
SIZE = 128
GP_WEIGHT = 10.0


def make_step(arch: str, precision: str, seed: int = 0, **hparams):
    """A closure running one training step of ``arch`` (fresh networks, Adam as in training)."""
    torch.manual_seed(seed)
    generator = build_generator(arch, **hparams.get("generator", {}))
    critic = build_critic(arch, **hparams.get("critic", {}))
    for net in (generator, critic):
        net.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(generator.parameters(), 1e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9))
    rng = torch.Generator().manual_seed(seed)
    real = (torch.rand(BATCH, 1, SIZE, SIZE, generator=rng) * 2 - 1).contiguous(
        memory_format=torch.channels_last)
    settings = StepSettings(GP_WEIGHT, precision, torch.device("cpu"))

    def step() -> None:
        critic_step(generator, critic, opt_d, real, rng, settings)
        generator_step(generator, critic, opt_g, BATCH, rng, settings)

    params = (sum(p.numel() for p in generator.parameters()),
              sum(p.numel() for p in critic.parameters()))
    return step, params


def run(repeats: int = 3, warmup: int = 1, resnet_arch: str = "resnet128", **hparams) -> dict:
    precisions = ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]
    steps, params = {}, {}
    for arch in ("v1", resnet_arch):
        for precision in precisions:
            steps[arch, precision], params[arch] = make_step(
                arch, precision, **(hparams if arch == resnet_arch else {}))
    times: dict = {key: [] for key in steps}
    with reused_cpu_memory():
        for step in steps.values():
            for _ in range(warmup):
                step()
        for _ in range(repeats):
            for key, step in steps.items():
                start = time.perf_counter()
                step()
                times[key].append(time.perf_counter() - start)
    figures: dict = {"batch": BATCH, "image_size": SIZE, "torch_threads": torch.get_num_threads(),
                     "cpu_bf16": cpu_supports_bf16(), "repeats": repeats}
    for arch in ("v1", resnet_arch):
        figures[f"{arch}_params_generator_critic"] = list(params[arch])
        for precision in precisions:
            figures[f"{arch}_{precision}_step_s"] = round(statistics.median(times[arch, precision]), 3)
    for precision in precisions:
        figures[f"{resnet_arch}_over_v1_{precision}"] = round(
            figures[f"{resnet_arch}_{precision}_step_s"] / figures[f"v1_{precision}_step_s"], 2)
    return figures


if __name__ == "__main__":
    print(run())
