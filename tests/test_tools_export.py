"""`basicsr export`: ONNX with dynamic height/width matching PyTorch, safetensors weights."""
import re

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import yaml

from conftest import ROOT
from moesr_arch.inference import build_from_options
from moesr_arch.tools import export

NETWORKS = {
    'EDSR': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2,
             'res_scale': 1, 'img_range': 255., 'rgb_mean': [0.4488, 0.4371, 0.4040]},
    'VDSR': {'type': 'VDSR', 'num_feat': 8, 'num_layer': 4, 'upscale': 2},
    'SeemoRe': {'type': 'SeemoRe', 'variant': 'T', 'scale': 2, 'num_layers': 2, 'embedding_dim': 16},
}


def options_with_weights(tmp_path, network):
    torch.manual_seed(0)
    built = build_from_options(write(tmp_path / 'plain.yml', network), require_weights=False)[0]
    torch.save({'params_ema': built.state_dict()}, tmp_path / 'net.pth')
    return write(tmp_path / 'net.yml', network, tmp_path / 'net.pth'), built


def write(path, network, weights=None):
    path.write_text(yaml.safe_dump({'name': 'export', 'scale': 2, 'network_g': network,
                                    'path': {'pretrain_network_g': str(weights) if weights else None,
                                             'param_key_g': 'params_ema'}}))
    return path


@pytest.mark.parametrize('arch', sorted(NETWORKS))
def test_onnx_has_dynamic_size_and_matches_pytorch(tmp_path, arch):
    options, network = options_with_weights(tmp_path, NETWORKS[arch])
    assert export.cli(['-opt', str(options), '--onnx', str(tmp_path / 'net.onnx'),
                       '--safetensors', str(tmp_path / 'net.safetensors'), '--trace_size', '32']) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / 'net.onnx'), providers=['CPUExecutionProvider'])
    for shape in ((1, 3, 20, 36), (2, 3, 33, 17)):  # neither is the traced 32x32
        x = torch.rand(*shape)
        got = session.run(None, {'input': x.numpy()})[0]
        with torch.no_grad():
            expected = network(x).numpy()
        assert got.shape == expected.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
        assert np.abs(got - expected).max() < 1e-4
    if arch == 'SeemoRe':  # routing is traced data-independently: every expert's weights are in the graph (the
        # dense mixture fuses them into one convolution each), not only the traced image's expert's
        # (tracing one expert per layer would leave out about two thirds of the experts' weights).
        graph = onnx.load(str(tmp_path / 'net.onnx')).graph
        stored = sum(int(np.prod(t.dims)) for t in graph.initializer)
        total = sum(p.numel() for p in network.parameters())
        experts = sum(p.numel() for name, p in network.named_parameters() if '.experts.' in name)
        assert stored > total - experts // 3, (stored, total, experts)
    # The safetensors weights load back through --model_path into the same network.
    reloaded = build_from_options(options, str(tmp_path / 'net.safetensors'))[0]
    for key, value in network.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value)


def test_export_reports_a_mismatch_and_needs_an_output(tmp_path):
    options, network = options_with_weights(tmp_path, NETWORKS['VDSR'])
    export.export_onnx(network, tmp_path / 'net.onnx', trace_size=16)
    with torch.no_grad():
        network.body[0].bias += 0.1  # PyTorch now differs from the exported graph
    with pytest.raises(export.ExportError, match='ONNX and PyTorch differ by'):
        export.verify_onnx(network, tmp_path / 'net.onnx')
    assert export.cli(['-opt', str(options)]) == 2


def test_export_traces_on_the_networks_device(monkeypatch):
    """The tracing example is made where the network's weights are (a CUDA network gets a CUDA example)."""
    import torch
    from moesr_arch.tools import export
    seen = {}

    def fake_export(network, args, buffer, **kwargs):
        seen['device'] = args[0].device
    monkeypatch.setattr(torch.onnx, 'export', fake_export)
    net = torch.nn.Conv2d(3, 3, 3, padding=1).to(torch.device('meta'))  # a device other than the CPU
    export.onnx_bytes(net)
    assert seen['device'].type == 'meta'


def test_export_prints_no_tracer_warnings_but_keeps_others(tmp_path):
    """The demo EDSR (inside BicubicResidual) traced three TracerWarnings a user cannot act on; the size check
    after the export is what guards the graph. A warning of another kind still reaches the user."""
    import warnings

    class Warns(torch.nn.Module):
        def forward(self, x):
            warnings.warn('a warning of the network itself')
            return x

    demo = yaml.safe_load((ROOT / 'options' / 'test_edsr_demo.yml').read_text())['network_g']
    network = build_from_options(write(tmp_path / 'demo.yml', demo), require_weights=False)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        export.onnx_bytes(network, trace_size=16)
        export.onnx_bytes(torch.nn.Sequential(network, Warns()), trace_size=16)
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert 'a warning of the network itself' in [str(w.message) for w in caught]
