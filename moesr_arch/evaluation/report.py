"""The metric lines of a validation in the log and TensorBoard, with each metric's best value so far.

The layout is BasicSR's (``SRModel``'s validation log), and ``best`` has the layout of BasicSR's
``best_metric_results`` (``{set: {metric: {better, val, iter}}}``), so logs and tools read alike for every model.
"""
from basicsr.utils import get_root_logger


def better_of(key, metrics):
    """``higher`` or ``lower``: the ``better`` of the ``val.metrics`` entry that ``key`` (``psnr``,
    ``psnr_reference``, ``psnr_people_bicubic``, ...) derives from."""
    base = next((name for name in metrics if key == name or key.startswith(f'{name}_')), None)
    return metrics[base]['better'] if base else 'higher'


def update_best(best, dataset_name, results, current_iter, metrics):
    """Record the values of ``results`` that beat the best of ``best[dataset_name]`` (in place)."""
    record = best.setdefault(dataset_name, {})
    for key, value in results.items():
        better = better_of(key, metrics)
        entry = record.setdefault(key, dict(better=better, val=float('-inf') if better == 'higher' else float('inf'),
                                            iter=-1))
        if (value >= entry['val']) if better == 'higher' else (value <= entry['val']):
            entry.update(val=value, iter=current_iter)


def log_metrics(results, best, dataset_name, current_iter, tb_logger):
    """The results of one validation pass, each with its best so far, to the log and to TensorBoard."""
    lines = [f'Validation {dataset_name}']
    for key, value in results.items():
        line = f'\t # {key}: {value:.4f}'
        entry = best.get(dataset_name, {}).get(key)
        if entry is not None:
            line += f'\tBest: {entry["val"]:.4f} @ {entry["iter"]} iter'
        lines.append(line)
        if tb_logger:
            tb_logger.add_scalar(f'metrics/{dataset_name}/{key}', value, current_iter)
    get_root_logger().info('\n'.join(lines))


def log_routing_statistics(statistics, dataset_name, current_iter, tb_logger):
    """Each expert's share of the pixels routed in a validation pass, to the log and TensorBoard."""
    if not statistics:
        return
    lines = [f'Routing on {dataset_name} (share of the routed pixels per expert):']
    for name, value in statistics.items():
        lines.append(f'\t # {name}: {value:.4f}')
        if tb_logger:
            tb_logger.add_scalar(f'routing/{dataset_name}/{name}', value, current_iter)
    get_root_logger().info('\n'.join(lines))
