"""A training loader that yields no batch stops the run at start.

BasicSR's training loader drops the incomplete last batch: a training set smaller than the batch gives
no batch at all, and the run then "trains" zero iterations per epoch, logs ``End of training``, saves
untrained weights and exits 0. :func:`build_dataloader`, which the plugin's training pipeline
(:mod:`moesr_arch.pipeline`) uses in place of BasicSR's, refuses that.
"""
from basicsr.data import build_dataloader as basicsr_build_dataloader


class EmptyLoaderError(ValueError):
    """The training set cannot fill one batch."""


def build_dataloader(dataset, dataset_opt, *args, **kwargs):
    """BasicSR's ``build_dataloader`` (same arguments), refusing a training loader without a batch.

    ``dataset_opt`` is the dataset section checked and filled (:func:`moesr_arch.options.check_dataset`), as the
    training pipeline hands it over."""
    loader = basicsr_build_dataloader(dataset, dataset_opt, *args, **kwargs)
    if dataset_opt.get('phase') == 'train' and len(loader) == 0:
        sampler = kwargs.get('sampler')
        samples = len(sampler) if sampler is not None else len(dataset)
        ratio = dataset_opt['dataset_enlarge_ratio']
        per_process = f' ({samples} samples per process with dataset_enlarge_ratio {ratio})' \
            if samples != len(dataset) else ''
        raise EmptyLoaderError(
            f"datasets.train ({dataset_opt.get('name')}): {len(dataset)} training images{per_process} make no "
            f"batch of batch_size_per_gpu {dataset_opt['batch_size_per_gpu']} (an incomplete batch is dropped); "
            'lower batch_size_per_gpu or raise dataset_enlarge_ratio')
    return loader

