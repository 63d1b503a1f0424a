"""Reading pickled checkpoints without running anything they name: tensors, containers and the weights of
pickled whole models (``torch.save(model)``), nothing else.

A pickle is a program: loading one with ``pickle`` (or ``torch.load(weights_only=False)``) imports every
class it names and calls every callable it holds, ``os.system`` included. This reader interprets the
pickle with a table of what may be built (:data:`ALLOWED`: tensors, storages, ``OrderedDict``, ``set``,
``torch.Size``); every other class it names becomes an inert :class:`PickledObject` subclass that only
records the state the pickle gives it and never imports its module. A pickled ``nn.Module`` therefore
comes back as a record of its ``_parameters``, ``_buffers`` and ``_modules``, from which
:func:`module_state_dict` collects the state dict under the module path names. Calling anything outside
the table (``REDUCE``, ``INST``, ``OBJ``, ``NEWOBJ`` with arguments) is refused with
:class:`UnsafePickleError` naming it, before it could run.

Both of torch's file formats are read: the zip format (torch >= 1.6: ``<name>/data.pkl`` and
``<name>/data/<key>``) and the legacy one (torch < 1.6, Python 2 included: magic number, protocol,
system info, the pickle, the storage keys, then the raw storages).
"""
import io
import pickle
import struct
import zipfile
from collections import OrderedDict

import torch

from moesr_arch.errors import UserError

LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
# Element types of torch's (typed) storage classes, by the name a pickle gives them.
STORAGE_DTYPES = {
    'DoubleStorage': torch.float64, 'FloatStorage': torch.float32, 'HalfStorage': torch.float16,
    'BFloat16Storage': torch.bfloat16, 'LongStorage': torch.int64, 'IntStorage': torch.int32,
    'ShortStorage': torch.int16, 'CharStorage': torch.int8, 'ByteStorage': torch.uint8, 'BoolStorage': torch.bool,
    'ComplexFloatStorage': torch.complex64, 'ComplexDoubleStorage': torch.complex128, 'UntypedStorage': torch.uint8,
}
# Python 2 pickles name a few modules differently.
PY2_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}


class UnsafePickleError(UserError, RuntimeError):
    """A pickle that would call something other than a tensor or container constructor."""


class PickledObject:
    """An object of a class the pickle names but that is never imported: it keeps the state the pickle sets
    (``__setstate__`` / ``BUILD``) and nothing else. Subclasses carry the class's dotted name."""

    qualified_name = '?'

    def __new__(cls, *args):
        if args:  # NEWOBJ with arguments: the class's own __new__ would run on them
            raise UnsafePickleError(f'the pickle calls {cls.qualified_name}')
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        # Only a call (REDUCE, INST, OBJ) runs __init__; NEWOBJ, which rebuilds an object without calling
        # its class (how pickle restores modules), does not. A call is what could run code.
        raise UnsafePickleError(f'the pickle calls {self.qualified_name}')

    def __setstate__(self, state):
        self.pickled_state = state


def placeholder(module, name):
    """A :class:`PickledObject` subclass standing for ``module.name``."""
    return type(name, (PickledObject, ), {'qualified_name': f'{module}.{name}', '__module__': __name__})


class _StorageType:
    """What a storage class (``torch.FloatStorage``) stands for here: its element type."""

    def __init__(self, dtype):
        self.dtype = dtype


class _Storage:
    """Bytes of one storage (a slice of a uint8 tensor, filled now or, in the legacy format, after the
    pickle) and their element type."""

    def __init__(self, data, dtype):
        self.data, self.dtype = data, dtype


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, _Storage):
        raise ValueError(f'a tensor is rebuilt from a {type(storage).__name__}, not a storage')
    itemsize = torch.empty((), dtype=storage.dtype).element_size()
    if storage.data.storage_offset() % itemsize:
        raise ValueError('a storage view is not aligned to its element size')
    offset = storage.data.storage_offset() // itemsize + storage_offset
    # set_ checks that size, stride and offset stay inside the storage.
    return torch.empty(0, dtype=storage.dtype).set_(storage.data.untyped_storage(), offset, tuple(size),
                                                     tuple(stride))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    if metadata:  # conjugate / negative bits: not part of a real-valued weights file
        raise ValueError(f'a tensor carries metadata {metadata!r}')
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    if not isinstance(data, torch.Tensor):
        raise ValueError(f'a parameter is rebuilt from a {type(data).__name__}, not a tensor')
    return data


class _LegacyParameter:
    """A parameter of a torch < 1.0 pickle: ``Parameter(tensor)``, then a ``BUILD`` with (requires_grad, ...)
    that torch's ``Tensor.__setstate__`` would apply; here the tensor is kept and the state dropped."""

    def __init__(self, data, *unused):
        self.data = _rebuild_parameter(data)

    def __setstate__(self, state):
        pass


def _legacy_backend():
    """torch < 0.4 pickled each module's backend as a call to ``_get_thnn_function_backend()``; it holds no
    weights, so nothing stands in for it."""
    return None


ALLOWED = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('torch', 'Size'): tuple,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch.nn.parameter', 'Parameter'): _LegacyParameter,
    ('torch.nn.backends.thnn', '_get_thnn_function_backend'): _legacy_backend,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only :data:`ALLOWED` things; ``storage(saved_id)`` resolves storages."""

    def __init__(self, file, storage):
        super().__init__(file, encoding='utf-8', errors='surrogateescape')
        self.storage = storage
        self.placeholders = {}

    def find_class(self, module, name):
        module = PY2_MODULES.get(module, module)
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module == 'torch' and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if (module, name) not in self.placeholders:
            self.placeholders[(module, name)] = placeholder(module, name)
        return self.placeholders[(module, name)]

    def persistent_load(self, saved_id):
        kind = saved_id[0].decode('ascii') if isinstance(saved_id, tuple) and isinstance(saved_id[0], bytes) else \
            (saved_id[0] if isinstance(saved_id, tuple) and saved_id else None)
        if kind == 'module':  # legacy format: the class of a pickled module, with its source code
            return saved_id[1]
        if kind == 'storage':
            return self.storage(saved_id[1:])
        raise ValueError(f'unknown persistent id {saved_id!r}')


def read_pickle(path):
    """The object pickled in the torch file ``path`` (zip or legacy format), read with
    :class:`RestrictedUnpickler`. Raises :class:`UnsafePickleError` for a pickle that would call anything
    outside :data:`ALLOWED`; other errors (a truncated, corrupt or foreign file) propagate."""
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    with open(path, 'rb') as file:
        return _read_legacy(file)


def _dtype_of(storage_type):
    if not isinstance(storage_type, _StorageType):
        raise ValueError(f'a storage of type {getattr(storage_type, "qualified_name", storage_type)!r}')
    return storage_type.dtype


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith('/data.pkl') or name == 'data.pkl']
        if not pickles:
            raise ValueError('a zip file without data.pkl (a TorchScript archive or another kind of zip)')
        prefix = pickles[0][:-len('data.pkl')]
        if f'{prefix}byteorder' in names and archive.read(f'{prefix}byteorder').decode() != 'little':
            raise ValueError('a big-endian torch file')
        storages = {}

        def storage(saved):
            storage_type, key, _location, numel = saved[:4]
            dtype = _dtype_of(storage_type)
            if key not in storages:
                data = bytearray(archive.read(f'{prefix}data/{key}'))
                storages[key] = torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
            return _Storage(storages[key], dtype)

        return RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), storage).load()


def _read_legacy(file):
    header = RestrictedUnpickler(file, None)
    if header.load() != LEGACY_MAGIC_NUMBER:
        raise ValueError('not a torch file (no magic number)')
    header.load()  # protocol version
    header.load()  # system info (sizes, byte order: every torch build that wrote one was little-endian)
    roots = {}

    def storage(saved):
        storage_type, root_key, _location, numel, view = saved
        dtype = _dtype_of(storage_type)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if root_key not in roots:
            roots[root_key] = (torch.empty(numel * itemsize, dtype=torch.uint8), itemsize)
        data = roots[root_key][0]
        if view is not None:  # (view key, offset, size) in elements of a shared root storage
            _key, offset, size = view
            data = data[offset * itemsize:(offset + size) * itemsize]
        return _Storage(data, dtype)

    result = RestrictedUnpickler(file, storage).load()
    keys = RestrictedUnpickler(file, None).load()
    for key in keys:
        data, itemsize = roots[key]
        (count, ) = struct.unpack('<q', file.read(8))
        raw = file.read(count * itemsize)
        if count * itemsize != data.numel() or len(raw) != data.numel():
            raise ValueError(f'storage {key}: {len(raw)} bytes where {data.numel()} were expected (truncated file)')
        if raw:
            data.copy_(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    return result


def is_pickled_module(value):
    """Whether ``value`` is a pickled ``nn.Module`` as this reader gives it back."""
    return isinstance(value, PickledObject) and isinstance(getattr(value, 'pickled_state', None), dict) and \
        '_parameters' in value.pickled_state


def module_state_dict(module, prefix=''):
    """The state dict of a pickled ``nn.Module`` (:func:`is_pickled_module`): its parameters and persistent
    buffers, then its submodules', under the module path names (``residual_layer.0.conv.weight``)."""
    state = module.pickled_state
    result = OrderedDict()
    skipped = set(state.get('_non_persistent_buffers_set') or ())
    for section in ('_parameters', '_buffers'):
        for name, value in (state.get(section) or {}).items():
            if value is not None and name not in skipped:
                result[prefix + name] = value.data if isinstance(value, _LegacyParameter) else value
    for name, child in (state.get('_modules') or {}).items():
        if child is not None and is_pickled_module(child):
            result.update(module_state_dict(child, f'{prefix}{name}.'))
    return result
