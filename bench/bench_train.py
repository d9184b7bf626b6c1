"""Seconds per v1 training step at batch 16: rxwgan's loop against a plain fp32 port.

A "step" is what the old tool did per batch: one critic step (with gradient penalty)
and one generator step. The reference below is the plain PyTorch port of that step
(NCHW contiguous, fp32, torch's nn.Dropout, three critic calls); rxwgan's step is the
training loop's own code (`steps.critic_step` + `generator_step` under the Trainer's `StepSettings`:
channels-last, bf16 autocast where the CPU has it, reals and fakes in one critic call
and x_hat in another, our dropout masks, history divergences included). Same model, same batch, same machine,
one run. Also reported: the data-loading and history-metric shares of rxwgan's step,
its achieved GFLOP/s, and the machine's fp32 matmul GFLOP/s as a ceiling.

Both are timed as ``rxwgan train``'s steps run on a CPU: inside ``reused_cpu_memory``, where
freed memory is kept for the next step. The same measurement with ``--release-cpu-memory``
(glibc's default: every large block mapped and page-faulted afresh) runs in a child
process, so that nothing of the first lingers in the allocator, and is reported beside it.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from rxwgan.base.devices import cpu_supports_bf16, reused_cpu_memory
from rxwgan.data.phantoms import write_demo_data
from rxwgan.data.splits import SplitSpec
from rxwgan.models import build_critic, build_generator
from rxwgan.models.keras_layers import Dropout, SameConv2d, tf_same_pads
from rxwgan.models.penalty_layers import MaskReLU
from rxwgan.train.config import TrainConfig
from rxwgan.train.loop import Trainer
from rxwgan.train.losses import critic_loss, generator_loss, gradient_penalty
from rxwgan.train.steps import critic_step, generator_step, unit_divergences

BATCH = 16


def reference_step(generator, critic, opt_g, opt_d, real: torch.Tensor) -> None:
    """The plain fp32 port: one critic step with GP, one generator step."""
    z = torch.randn(len(real), generator.latent_dim)
    with torch.no_grad():
        fake = generator(z)
    loss_d = critic_loss(critic(real), critic(fake)) + 10.0 * gradient_penalty(critic, real, fake)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    z = torch.randn(len(real), generator.latent_dim)
    loss_g = generator_loss(critic(generator(z)))
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()


class FlopCount(TorchDispatchMode):
    """Counts matmul/conv FLOPs of every op run inside it (forward, backward, double backward).

    torch's FlopCounterMode cannot follow ``autograd.grad`` (the gradient penalty), so
    this uses its per-op formulas directly, without its module tracking.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


class PlainSameConv2d(SameConv2d):
    """SameConv2d on F.conv2d: PyTorch's own backward and double backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_pads(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = tf_same_pads(x.shape[-1], self.kernel_size[1], self.stride[1])
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)


def plain_port(module: nn.Module) -> nn.Module:
    """The same network with torch's own layers (nn.Dropout, nn.ReLU, F.conv2d), as a plain port."""
    for name, child in module.named_children():
        if isinstance(child, Dropout):
            setattr(module, name, nn.Dropout(child.p))
        elif isinstance(child, MaskReLU):
            setattr(module, name, nn.ReLU())
        elif isinstance(child, SameConv2d):
            plain = PlainSameConv2d(child.in_channels, child.out_channels, child.kernel_size[0],
                                    child.stride[0])
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            plain_port(child)
    return module


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(timed(lambda: a @ b, repeats))
    return 2 * size**3 / best / 1e9


def penalty_agreement(critic, real: torch.Tensor) -> dict:
    """GP of the same inputs in fp32 and under bf16 autocast (channels-last): finite and close?"""
    critic.eval()  # dropout off, so both precisions see the same network
    fake = torch.rand_like(real) * 2 - 1
    fp32 = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1)).item()
    critic_cl = critic.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = gradient_penalty(critic_cl, real.contiguous(memory_format=torch.channels_last),
                                fake.contiguous(memory_format=torch.channels_last),
                                generator=torch.Generator().manual_seed(1)).item()
    critic.train()
    return {"gp_fp32": round(fp32, 6), "gp_bf16": round(bf16, 6),
            "gp_bf16_relative_gap": float(f"{abs(bf16 - fp32) / abs(fp32):.2e}")}


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def run(repeats: int = 5, warmup: int = 2) -> dict:
    figures = measure(repeats, warmup, reuse_cpu_memory=True)
    child = subprocess.run([sys.executable, __file__, "--release-cpu-memory", str(repeats), str(warmup)],
                           capture_output=True, text=True, check=True)
    released = json.loads(child.stdout.strip().splitlines()[-1])
    keys = ("reference_fp32_step_s", "rxwgan_step_s", "speedup", "rxwgan_page_faults_per_step")
    figures["release_cpu_memory"] = {key: released[key] for key in keys}
    return figures


def measure(repeats: int, warmup: int, reuse_cpu_memory: bool) -> dict:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        table = write_demo_data(Path(tmp) / "d", n_images=80, size=128, seed=0)
        config = TrainConfig(input=str(table), output=str(Path(tmp) / "run"), model="v1",
                             split=SplitSpec(fold=0, n_splits=2), batch_size=BATCH, n_critic=1,
                             progress=False,
                             cache_dir=str(Path(tmp) / "cache"))
        trainer = Trainer(config, log=lambda _: None)
        assert len(trainer.train_images) >= BATCH, "the bench needs a full batch of training images"
        order = torch.arange(len(trainer.train_images))

        def load_batch() -> torch.Tensor:
            return trainer.train_images[order[:BATCH]]

        state, settings = trainer.state, trainer.step_settings

        def ours() -> None:
            critic_step(state.generator, state.critic, state.opt_d, load_batch(), state.rng, settings)
            generator_step(state.generator, state.critic, state.opt_g, BATCH, state.rng, settings)

        generator, critic = plain_port(build_generator("v1")), plain_port(build_critic("v1"))
        opt_g = torch.optim.Adam(generator.parameters(), 1e-4, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.5, 0.9))
        real = load_batch().float().contiguous()
        generator.train()
        critic.train()

        def reference() -> None:
            reference_step(generator, critic, opt_g, opt_d, real)

        with FlopCount() as counter:
            reference()
        flops = counter.total

        with reused_cpu_memory(reuse_cpu_memory):
            for fn in (reference, ours):
                timed(fn, warmup)
            # Interleave so a change in machine load hits both sides alike.
            ref_times, our_times, our_faults = [], [], []
            for _ in range(repeats):
                ref_times += timed(reference, 1)
                before = minor_faults()
                our_times += timed(ours, 1)
                our_faults.append(minor_faults() - before)
        load_times = timed(load_batch, 50)
        fake = torch.rand_like(real) * 2 - 1
        metric_times = timed(lambda: unit_divergences(real, fake), 10)

        agreement = penalty_agreement(build_critic("v1"), real)

    ref_s, our_s = statistics.median(ref_times), statistics.median(our_times)
    return {**agreement,
        "model": "v1 (128 px)", "batch": BATCH, "torch_threads": torch.get_num_threads(),
        "precision": trainer.precision, "cpu_bf16": cpu_supports_bf16(),
        "reference_fp32_step_s": round(ref_s, 3), "rxwgan_step_s": round(our_s, 3),
        "speedup": round(ref_s / our_s, 2), "reuse_cpu_memory": reuse_cpu_memory,
        "rxwgan_page_faults_per_step": int(statistics.median(our_faults)),
        "data_loading_share": round(statistics.median(load_times) / our_s, 5),
        "history_metrics_share": round(statistics.median(metric_times) / our_s, 4),
        "step_gflop": round(flops / 1e9, 1),
        "rxwgan_gflops_per_s": round(flops / our_s / 1e9, 1),
        "reference_gflops_per_s": round(flops / ref_s / 1e9, 1),
        "matmul_fp32_gflops_per_s": round(matmul_gflops(), 1),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--release-cpu-memory"]:
        print(json.dumps(measure(int(sys.argv[2]), int(sys.argv[3]), reuse_cpu_memory=False)))
    else:
        print(run())
