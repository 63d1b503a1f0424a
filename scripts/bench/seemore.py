"""Benchmark section: this SeemoRe against spandrel's (the official code) on the same weights, its training
step with the sparse and the dense expert mixture, and model cost.

Run alone: ``python scripts/bench/seemore.py [--quick]`` (prints the Markdown tables).
"""
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import moesr_arch  # noqa: E402,F401  (registration, torchvision shim)
from moesr_arch.archs.seemore_arch import SEEMORE_PRESETS, SeemoRe  # noqa: E402
from scripts.bench import Table  # noqa: E402
from scripts.bench.measure import diverse_router, seemore_macs  # noqa: E402

# Paper Table 1, SeemoRe-T (params, GMACs for a 1280x720 output); B and L are not in the notes we have.
PAPER_T = {2: ('220K', 45), 3: ('225K', 20), 4: ('232K', 12)}
LR_FOR_720P = {2: (360, 640), 3: (240, 427), 4: (180, 320)}


def machine():
    return f'{os.cpu_count()}-core CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}'


def _time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_table(quick):
    from spandrel.architectures.SeemoRe import SeemoRe as ReferenceSeemoRe
    torch.manual_seed(0)
    scale, variant = 4, 'T'
    ours = SeemoRe(scale=scale, variant=variant).eval()
    reference = ReferenceSeemoRe(scale=scale, **SEEMORE_PRESETS[variant]).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    lr_size = (24, 40) if quick else (180, 320)
    repeats = 1 if quick else 3
    rows = []
    with torch.inference_mode():
        for batch in (1, 8):
            images = torch.rand(batch, 3, *lr_size)

            def run_ours():
                return ours(images)

            def run_reference():
                # The official eval routing is valid for one image at a time: a batch is a loop.
                return torch.cat([reference(image[None]) for image in images])

            difference = (run_ours() - run_reference()).abs().max().item()  # also the warm-up
            ours_s = _time(run_ours, repeats)
            reference_s = _time(run_reference, repeats)
            rows.append([batch, f'{lr_size[1]}x{lr_size[0]}', round(reference_s, 3), round(ours_s, 3),
                         f'{reference_s / ours_s:.2f}x', round(batch / ours_s, 3), f'{difference:.1e}'])
    return Table(
        title=f'SeemoRe-{variant} x{scale} inference, CPU fp32: this plugin vs spandrel (official code)',
        headers=['batch', 'LR size', 'spandrel s/batch', 'moesr s/batch', 'speed-up', 'moesr images/s',
                 'max abs diff'],
        rows=rows,
        notes=[f'Machine: {machine()}; shared with other jobs, so absolute times are noisy; both networks are '
               f'timed in the same run on the same weights (median of {repeats}).',
               'spandrel batch 8 = 8 single-image calls: its (official) eval routing is only valid for batch 1.',
               'moesr: per-sample routing (images grouped by expert), weight-permuted channel shuffle, '
               'channels-last features with native layer norm, split 1x1 convs computed as two convs '
               '(PointwiseHalves). Eager: torch.compile made SeemoRe-T x4 slower on this CPU (1.37 s against '
               '1.10 s at batch 1, after 75 s of compiling).'])


def mixed_routing(model, images, seed=0):
    """``model`` in training mode with routers that send the ``images`` of a batch to different experts
    (:func:`scripts.bench.measure.diverse_router`); returns the mean number of experts picked per layer."""
    diverse_router(model, images, seed).train()
    with torch.no_grad():
        _, stats = model(images, return_stats=True)
    return sum(pixels > 0 for pixels in stats['expert_pixels'].values()) / len(model._moe_layers())


def training_table(quick):
    """Training steps (forward, L1 loss, backward, Adam) of SeemoRe-T x2 with each expert mixture."""
    from spandrel.architectures.SeemoRe import SeemoRe as ReferenceSeemoRe
    torch.manual_seed(0)
    batch, size = (2, 16) if quick else (8, 48)
    repeats = 1 if quick else 5
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(batch, 3, size, size, generator=generator) * torch.rand(batch, 3, 1, 1, generator=generator)
    target = torch.rand(batch, 3, 2 * size, 2 * size, generator=generator)
    rows = []
    for routing in ('as initialised', 'mixed'):
        model = SeemoRe(scale=2, variant='T')
        picked = mixed_routing(model, images) if routing == 'mixed' else None
        reference = ReferenceSeemoRe(scale=2, **SEEMORE_PRESETS['T'])
        reference.load_state_dict(model.state_dict())
        nets = {'official code (spandrel), dense loop': reference}
        for mode in ('dense', 'sparse'):
            nets[f'moesr, {mode}'] = copy.deepcopy(model).set_mixture(mode)

        def step(net, optimizer):
            optimizer.zero_grad()
            (net(images) - target).abs().mean().backward()
            optimizer.step()

        optimizers = {name: torch.optim.Adam(net.train().parameters(), 1e-4) for name, net in nets.items()}
        for name, net in nets.items():  # warm-up
            step(net, optimizers[name])
        times = {name: [] for name in nets}
        for _ in range(repeats):  # interleaved, so that a busy moment of the machine hits every row alike
            for name, net in nets.items():
                start = time.process_time()
                step(net, optimizers[name])
                times[name].append(time.process_time() - start)
        with torch.no_grad():
            _, stats = nets['moesr, sparse'](images, return_stats=True)
        if picked is None:
            picked = sum(pixels > 0 for pixels in stats['expert_pixels'].values()) / len(model._moe_layers())
        official = statistics.median(times['official code (spandrel), dense loop'])
        for name, values in times.items():
            seconds = statistics.median(values)
            rows.append([routing, f'{picked:.1f}', name, round(seconds, 3), round(1 / seconds, 2),
                         f'{official / seconds:.2f}x'])
    return Table(
        title=f'SeemoRe-T x2 training step, CPU fp32: sparse and dense expert mixture (batch {batch}, '
              f'{size}x{size} LR)',
        headers=['routing', 'experts picked per layer', 'network', 's/iteration (CPU time)', 'iterations/s',
                 'vs official'],
        rows=rows,
        notes=[f'Machine: {machine()}. One step: forward, L1 loss, backward, Adam; CPU time of the process '
               f'(median of {repeats}, the networks interleaved), which a machine shared with other jobs disturbs '
               'less than wall time.',
               'dense: every rank expert on every image, the unpicked ones weighted by zero (the official '
               'formulation), computed as three fused convolutions; sparse: each image through the expert it '
               'picked only, batched by expert. Same outputs and gradients (tests/test_seemore.py); moesr trains '
               "dense by default ('auto').",
               'Routing "as initialised": a fresh network sends a whole batch to one expert per layer; "mixed": '
               'router weights set so that the images of the batch pick different experts, as trained routers '
               'do.'])


def cost_table():
    rows = []
    for variant in SEEMORE_PRESETS:
        for scale in (2, 3, 4):
            model = SeemoRe(scale=scale, variant=variant)
            params = sum(p.numel() for p in model.parameters())
            lr_size = LR_FOR_720P[scale]
            gmacs = [seemore_macs(model, lr_size, pick) / 1e9 for pick in ('mean', 'min', 'max')]
            paper = PAPER_T.get(scale) if variant == 'T' else None
            rows.append([f'SeemoRe-{variant}', f'x{scale}', f'{params / 1e3:.1f}K', paper[0] if paper else '-',
                         round(gmacs[0], 2), f'{gmacs[1]:.2f}-{gmacs[2]:.2f}', paper[1] if paper else '-'])
    return Table(
        title='SeemoRe presets: parameters and GMACs for a 1280x720 output',
        headers=['model', 'scale', 'params', 'paper params', 'GMACs', 'GMACs range (expert choice)', 'paper GMACs'],
        rows=rows,
        notes=['GMACs: analytic count of convolution and linear multiply-accumulates (seemore_macs in '
               'scripts/bench/measure.py), equal to a forward-hook count (count_macs there) for the experts '
               'actually taken. '
               'LR input 640x360 (x2), 427x240 (x3), 320x180 (x4).',
               'The cost depends on the routing: "GMACs" assumes every rank expert equally likely, the range '
               'spans always-smallest to always-largest rank. Paper figures: SeemoRe-T only (Table 1).'])


def run(quick):
    return [speed_table(quick), training_table(quick), cost_table()]


if __name__ == '__main__':
    for table in run('--quick' in sys.argv):
        print(table.markdown())
