"""CUDA readiness check of moesr on one GPU, in under 8 minutes (``make gpu-check``).

Usage: ``python scripts/gpu_check.py [--dry-run] [--deadline 450] [--output experiments/gpu_check]
[--data .] [--work DIR]``

Short training runs (train + validation + ``--auto_resume``, MoE-SR with ``prefetch_mode: cuda``,
MoEISR, torchrun with NCCL, ``train-gate``) run in parallel subprocesses, each with a timeout; the
checks of :mod:`gpu_check_units` (CUDA against reference results, autocast dtypes, the YOLO gate,
``basicsr infer``, ONNX export) run meanwhile in one more. Then, on the idle GPU, the timing checks, the
SeemoRe-T throughput table, the training speed table (``make bench``'s training section: fp32 against
``train.amp``, ``train.channels_last``, ``train.compile``, and whether bf16 is native) and ``torch.compile`` of
SeemoRe-T, these last two with the time left. One line per path:
``PASS|FAIL|SKIP name :: detail [seconds]``, and ``BENCH`` lines; ``results.txt`` and one log and
option file per job land in ``--output``. The exit status is 1 if anything failed.

``--dry-run`` runs the same on the CPU with CUDA hidden: the CUDA-only paths (torchrun with NCCL,
``train-gate`` on CUDA, the timing checks, ``torch.compile``) are SKIPs, MoE-SR prefetches on the CPU
and the throughput table runs on tiny inputs (its figures mean nothing). ``tests/test_gpu_check.py``
runs it. The script installs nothing; ``scripts/gpu_check.sh`` prepares a bare GPU machine.
"""
import argparse
import importlib.util
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Every training run stops after 4 iterations, validates once and saves states at 2 and 4.
SHORT = {'train.total_iter': 4, 'val.val_freq': 4, 'logger.print_freq': 1, 'logger.save_checkpoint_freq': 2,
         'logger.use_tb_logger': False,
         'train.scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}}
TINY_EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
SEEMORE_DEMO, MOESR_RECIPE = 'options/train_seemore_demo.yml', 'options/train_moesr.yml'
# The SeemoRe-T photo recipe on CUDA: about 3 minutes at an assumed 20 iterations per second.
PHOTOS_RECIPE, PHOTO_ITERS = 'options/train_seemore_photos_x2.yml', 3000
MOESR_STAGES = [{'stage': 'generalist', 'iters': 2}, {'stage': 'experts', 'iters': 1}, {'stage': 'joint', 'iters': 1}]
ERROR_LINE = re.compile(r'Error|Exception|Traceback|Skipping|Invalid options')


class Reporter:
    """Prints result lines and appends them to results.txt; the pipeline threads share it."""

    def __init__(self, path):
        self.path, self.lock, self.lines = path, threading.Lock(), []
        path.write_text('')

    def __call__(self, line):
        with self.lock:
            print(line, flush=True)
            self.lines.append(line)
            with open(self.path, 'a') as f:
                f.write(line + '\n')

    def count(self, status):
        return sum(line.startswith(status + ' ') for line in self.lines)


@dataclass
class Job:
    """One command with a timeout and a verdict on its log; ``skip`` (a reason) reports it without running."""
    name: str
    command: list
    verdict: object  # (log text, run folder) -> detail; raises AssertionError on a wrong result
    timeout: int = 150
    env: dict = field(default_factory=dict)
    skip: str = ''
    relay: bool = False  # a gpu_check_units.py process: report its own result lines, and itself only if it fails


def run_logged(command, cwd, log_path, timeout, env):
    """Run ``command`` with its output in ``log_path``; kill its whole process group (torchrun's workers,
    data loader workers) on timeout. Returns the exit status, 124 for a timeout."""
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            return 124


class GpuCheck:
    """The jobs of one check run; the results go to ``report``."""

    def __init__(self, args, report):
        self.args, self.report = args, report
        self.cuda = not args.dry_run
        self.work, self.out = Path(args.work), Path(args.output)
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
        self.env = {'OMP_NUM_THREADS': '2', **os.environ, 'PYTHONPATH': path}
        # The timeouts fit a GPU; a busy 2-core CPU needs a few times longer for the same runs.
        self.slack = 3 if args.dry_run else 1
        if args.dry_run:
            self.env['CUDA_VISIBLE_DEVICES'] = ''

    def options(self, name, source, overrides):
        """Write project option file ``source`` with dotted-key ``overrides`` to ``output/name.yml``."""
        opt = yaml.safe_load((ROOT / source).read_text())
        for dotted, value in overrides.items():
            *parents, last = dotted.split('.')
            node = opt
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
        path = self.out / f'{name}.yml'
        path.write_text(yaml.safe_dump(opt, sort_keys=False))
        return str(path)

    def run_chain(self, folder, jobs):
        """Run ``jobs`` one after the other in ``work/folder`` (whose ``datasets`` is the demo data's)."""
        cwd = self.work / folder
        cwd.mkdir(parents=True, exist_ok=True)
        if not (cwd / 'datasets').exists():
            (cwd / 'datasets').symlink_to(Path(self.args.data).resolve() / 'datasets', target_is_directory=True)
        for job in jobs:
            if job.skip:
                self.report(f'SKIP {job.name} :: {job.skip}')
                continue
            start = time.perf_counter()
            code = run_logged(job.command, cwd, self.out / f'{job.name}.log', job.timeout * self.slack,
                              {**self.env, **job.env})
            seconds = time.perf_counter() - start
            log = (self.out / f'{job.name}.log').read_text(errors='replace')
            if job.relay:
                for line in log.splitlines():
                    if line.split(' ', 1)[0] in ('INFO', 'PASS', 'FAIL', 'SKIP', 'BENCH'):
                        self.report(line)
                if code:
                    self.report(f'FAIL {job.name} :: exit status {code}{" (timeout)" if code == 124 else ""}, '
                                f'see {job.name}.log [{seconds:.0f}s]')
                continue
            try:
                if code:
                    raise AssertionError(f'exit status {code}' + (' (timeout)' if code == 124 else ''))
                self.report(f'PASS {job.name} :: {job.verdict(log, cwd)} [{seconds:.0f}s]')
            except AssertionError as error:
                last = [line.strip() for line in log.splitlines() if ERROR_LINE.search(line)][-1:]
                self.report(f'FAIL {job.name} :: {error}{"; " + last[0][:240] if last else ""} [{seconds:.0f}s]')

    def part(self, name, timeout, budget=None):
        """A job running ``gpu_check_units.py --part name``; its PASS/FAIL/SKIP/BENCH/INFO lines are reported."""
        command = [sys.executable, str(ROOT / 'scripts' / 'gpu_check_units.py'), '--part', name,
                   '--work', str(self.work / 'units'), '--data', str(Path(self.args.data).resolve())]
        if budget is not None:
            command += ['--budget', str(budget)]
        if self.args.dry_run:
            command.append('--dry-run')
        return Job(f'{name}_process', command, None, timeout, relay=True)

    # ------------------------------------------------------------------------------------------------
    # The training runs.

    def training(self, name, source, overrides, verdict, torchrun=False, flags=(), **job):
        """A job training ``source`` with ``overrides``: ``basicsr train``, or torchrun with one process."""
        options = self.options(name, source, overrides)
        if torchrun:
            command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=1', '--master_addr=127.0.0.1',
                       f'--master_port={free_port()}', '-m', 'moesr_arch.train', '-opt', options,
                       '--launcher', 'pytorch']
        else:
            command = [sys.executable, '-m', 'moesr_arch', 'train', '-opt', options, *flags]
        return Job(name, command, verdict, **job)

    def pipelines(self):
        """Chains of jobs; a chain runs in one folder, the chains in parallel."""
        gpus = 1 if self.cuda else 0
        cuda_only = '' if self.cuda else 'CUDA only (dry run)'
        # num_gpu auto: CUDA when there is one (the CPU in a dry run, where CUDA is hidden)
        seemore = {'name': 'gpu_seemore', 'num_gpu': 'auto', 'network_g.network.num_layers': 1,
                   'datasets.train.batch_size_per_gpu': 4, **SHORT}
        # Tiny experts: the recipe's shipped generalist (path.pretrain_network_experts) does not fit them.
        moesr = {'name': 'gpu_moesr', 'num_gpu': gpus, 'train.stages': MOESR_STAGES,
                 'network_g.experts': dict.fromkeys(('people', 'vehicle', 'background'), TINY_EDSR),
                 'path.pretrain_network_experts': None,
                 'datasets.train.batch_size_per_gpu': 4, 'datasets.train.gt_size': 32,
                 'datasets.train.prefetch_mode': 'cuda' if self.cuda else 'cpu', 'datasets.train.pin_memory': True,
                 'datasets.train.num_worker_per_gpu': 2, **SHORT}
        moeisr = {'name': 'gpu_moeisr', 'num_gpu': gpus, 'datasets.train.batch_size_per_gpu': 2,
                  'datasets.train.lq_size': 16, 'datasets.train.sample_q': 64, 'network_g.num_feat': 8,
                  'network_g.num_block': 1, 'network_g.hidden_dim': 16, 'network_g.mapper_dim': 8, **SHORT}
        # The shipped MoE-SR recipe, only shortened: each stage leaves some experts without gradients.
        shipped = {'name': 'ddp_moesr', 'num_gpu': 1, 'train.stages': MOESR_STAGES, **SHORT}
        # The demo option files say num_gpu: 0: under torchrun on a CUDA machine that still means gloo on the CPU.
        cpu = {'name': 'ddp_cpu', 'network_g.network.num_feat': 8, 'network_g.network.num_block': 1,
               'datasets.train.batch_size_per_gpu': 2, 'datasets.train.gt_size': 32, **SHORT}
        gate_missing = ' and '.join(m for m in ('ultralytics', 'polars') if not module_available(m))
        train_gate = [sys.executable, '-m', 'moesr_arch', 'train-gate', '--dataset', 'datasets/demo', '--lr-scale', '4',
                      '--epochs', '1', '--imgsz', '64', '--batch', '2', '--device', '0', '--output', 'gate']
        return [
            [self.training('photos_seemore_x2', PHOTOS_RECIPE, self.photo_overrides(), photos_verdict, timeout=240,
                           skip=cuda_only)],
            [self.training('train_val_seemore', SEEMORE_DEMO, seemore, self.seemore_verdict),
             self.training('auto_resume', SEEMORE_DEMO, {**seemore, 'train.total_iter': 6}, resume_verdict,
                           flags=['--auto_resume'], timeout=120)],
            [self.training('moesr_prefetch', MOESR_RECIPE, moesr, self.moesr_verdict)],
            [self.training('moeisr_expert_maps', 'options/train_moeisr_demo.yml', moeisr, moeisr_verdict)],
            [self.training('torchrun_nccl_moesr_shipped', MOESR_RECIPE, shipped, ddp_verdict(nccl=False),
                           torchrun=True, timeout=120, skip=cuda_only)],
            [self.training('torchrun_nccl_moesr_unused', MOESR_RECIPE, {**shipped, 'find_unused_parameters': True},
                           ddp_verdict(nccl=True), torchrun=True, env={'NCCL_DEBUG': 'INFO'}, skip=cuda_only)],
            [self.training('torchrun_num_gpu_0', 'options/train_edsr_demo.yml', cpu, ddp_verdict(nccl=False),
                           torchrun=True, timeout=120, skip=cuda_only)],
            [Job('train_gate_cuda', train_gate, gate_verdict,
                 skip=cuda_only or (gate_missing and f'{gate_missing} not installed'))],
        ]

    def photo_overrides(self):
        """The SeemoRe-T photo recipe for about 3 minutes on one GPU: its batch and patch, bf16 (train.amp) where
        the GPU has it natively, Set5 validation every 1000 iterations. Without the photo corpus (a lent machine
        cannot download it) it trains on the demo photos, and says so."""
        data = Path(self.args.data).resolve() / 'datasets'
        overrides = {'name': 'gpu_photos_seemore', 'num_gpu': 1, 'train.total_iter': PHOTO_ITERS,
                     'train.scheduler.periods': [PHOTO_ITERS], 'val.val_freq': 1000, 'logger.print_freq': 100,
                     'logger.save_checkpoint_freq': PHOTO_ITERS, 'logger.use_tb_logger': False}
        if not (data / 'photos' / 'lmdb' / 'train_sub_HR.lmdb').is_dir():
            overrides.update({'datasets.train.dataroot_gt': 'datasets/demo/train/HR',
                              'datasets.train.dataroot_lq': 'datasets/demo/train/LR_bicubic/X2',
                              'datasets.train.io_backend': {'type': 'disk'},
                              'datasets.train.dataset_enlarge_ratio': 200})
            self.report('INFO photos_seemore_x2 :: no datasets/photos (basicsr prepare photos): trains on the '
                        'demo photos')
        if not (data / 'benchmark' / 'Set5' / 'HR').is_dir():
            overrides.update({'datasets.val.name': 'demo_val', 'datasets.val.dataroot_gt': 'datasets/demo/val/HR',
                              'datasets.val.dataroot_lq': 'datasets/demo/val/LR_bicubic/X2',
                              'datasets.val.filename_tmpl': '{}'})
            self.report('INFO photos_seemore_x2 :: no datasets/benchmark/Set5 (basicsr prepare benchmark): '
                        'validates on the demo photos')
        import torch
        if self.cuda and torch.cuda.is_bf16_supported(including_emulation=False):
            overrides['train.amp'] = 'bf16'
        return overrides

    def seemore_verdict(self, log, run):
        expect(log, rf'num_gpu: {"[1-9]" if self.cuda else 0}\b', 'num_gpu auto resolved')
        expect(log, r'Routing on demo_val', 'routing statistics of the validation')
        return f'4 iterations with num_gpu auto on {"CUDA" if self.cuda else "the CPU"}, validation routing statistics'

    def moesr_verdict(self, log, run):
        if self.cuda:
            expect(log, r'Use cuda prefetch dataloader', "BasicSR's CUDAPrefetcher")
        expect(log, r'MoE-SR on demo_val', 'the validation table')
        found(run, 'experiments/gpu_moesr/visualization/*/*_gate.png')
        return f'3 stages with prefetch_mode {"cuda" if self.cuda else "cpu"}, pinned memory, 2 workers; ' \
               'validation table and gate overlays'

    # ------------------------------------------------------------------------------------------------

    def run(self):
        started = time.monotonic()
        pipelines = self.pipelines()
        with ThreadPoolExecutor(len(pipelines) + 1) as pool:
            pending = [pool.submit(self.run_chain, jobs[0].name, jobs) for jobs in pipelines]
            pending.append(pool.submit(self.run_chain, 'units', [self.part('functional', 240)]))
            for future in pending:
                future.result()
        # On the idle GPU: timings, then the throughput table, the training speed table (no row starts in its
        # last 90 s: a compiled row may take that long) and torch.compile with whatever time is left.
        self.run_chain('units', [self.part('bench', 150)])
        left = int(self.args.deadline - (time.monotonic() - started) - 15)
        if self.cuda and left < 60:
            self.report(f'SKIP training_speed :: not enough time left ({left}s)')
        elif self.cuda:
            timeout = min(left, 240)
            self.run_chain('units', [self.part('training', timeout, budget=timeout - 90)])
        else:  # the dry run's tiny table, without compiling, whatever the deadline (as the bench part)
            self.run_chain('units', [self.part('training', 120)])
        left = int(self.args.deadline - (time.monotonic() - started) - 15)
        if not self.cuda:
            self.report('SKIP compile_seemore :: CUDA only (dry run)')
        elif left < 60:
            self.report(f'SKIP compile_seemore :: not enough time left ({left}s)')
        else:
            self.run_chain('units', [self.part('compile', min(left, 200))])
        summary = (f'==== {self.report.count("PASS")} PASS, {self.report.count("FAIL")} FAIL, '
                   f'{self.report.count("SKIP")} SKIP in {time.monotonic() - started:.0f} s ====')
        self.report(summary)
        return 1 if self.report.count('FAIL') else 0


def expect(log, pattern, what):
    if not re.search(pattern, log):
        raise AssertionError(f'{what} missing from the log (/{pattern}/)')


def found(run, pattern):
    files = sorted(run.glob(pattern))
    if not files:
        raise AssertionError(f'no {pattern}')
    return files


def photos_verdict(log, run):
    """Iterations per second (BasicSR's logged seconds per iteration, the last 100) and the validation PSNR."""
    times = [float(t) for t in re.findall(r'time \(data\): ([\d.]+)', log)]
    psnr = re.findall(r'Validation (\w+)\s+# psnr: ([\d.]+)', log)
    if not times or not psnr:
        raise AssertionError('no iteration times or no validation PSNR in the log')
    amp = re.search(r'\bamp: (bf16|fp16)', log)
    return (f'{PHOTO_ITERS} iterations at {1 / times[-1]:.1f} it/s ({amp.group(1) if amp else "fp32"}); '
            f'{psnr[-1][0]} PSNR-Y {float(psnr[-1][1]):.2f} dB')




def resume_verdict(log, run):
    # A state that fails to load is skipped with a warning and training silently starts again at 0.
    if 'Skipping unreadable training state' in log:
        raise AssertionError('a training state could not be read')
    expect(log, r'Resuming training from epoch: \d+, iter: 4\b', 'resuming at iteration 4')
    found(run, 'experiments/gpu_seemore/training_states/6.state')
    return 'continued at iteration 4, saved the state of iteration 6'


def moeisr_verdict(log, run):
    expect(log, r'decoder .*FLOPs', 'decoder FLOPs')
    maps = found(run, 'experiments/gpu_moeisr/visualization/*/*/*_experts.png')
    return f'validated x2/x4/x8 with decoder FLOPs, {len(maps)} expert maps'


def ddp_verdict(nccl):
    def verdict(log, run):
        expect(log, r'World size \(gpu number\): 1', 'world size 1')
        expect(log, r'DDP replicas agree', 'the replicas check')
        if nccl:
            expect(log, r'NCCL INFO', 'NCCL')
        return 'world size 1, replicas agree' + (', NCCL in use' if nccl else '')
    return verdict


def gate_verdict(log, run):
    found(run, 'gate/gate.pt')
    return 'trained one epoch on CUDA, gate.pt written'


def module_available(name):
    return importlib.util.find_spec(name) is not None


def free_port():
    with socket.socket() as probe:  # torchrun's --master_port=0 hangs: pick a free port ourselves
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dry-run', action='store_true', help='run on the CPU (CUDA hidden) to test this script')
    parser.add_argument('--deadline', type=int, default=450,
                        help='seconds the whole check may take; torch.compile gets what is left (default 450)')
    parser.add_argument('--output', default='experiments/gpu_check', help='results.txt and the logs go here')
    parser.add_argument('--data', default='.', help='folder holding datasets/demo (default: the current one)')
    parser.add_argument('--work', help='scratch folder for the runs (default: a new temporary folder)')
    args = parser.parse_args(argv)
    if not (Path(args.data) / 'datasets' / 'demo').is_dir():
        parser.error(f'no datasets/demo in {args.data}: run scripts/data_preparation/make_demo_dataset.py')
    import torch
    if not args.dry_run and not torch.cuda.is_available():
        parser.error('no CUDA device here; --dry-run checks this script on the CPU')
    # Absolute: every job runs in a folder of its own.
    args.work = str(Path(args.work or tempfile.mkdtemp(prefix='moesr_gpu_check_')).resolve())
    args.output = str(Path(args.output).resolve())
    Path(args.output).mkdir(parents=True, exist_ok=True)
    report = Reporter(Path(args.output) / 'results.txt')
    report(f'INFO {"dry run on the CPU" if args.dry_run else "on CUDA"}; runs in {args.work}, logs in {args.output}')
    return GpuCheck(args, report).run()


if __name__ == '__main__':
    sys.exit(main())
