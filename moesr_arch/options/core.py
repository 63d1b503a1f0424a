"""The building blocks of the option schema: the section base class, path fields and problem reports.

Every section of an option file is a pydantic model derived from :class:`Section`: strict types (YAML's
``2e-4`` stays the text it is, ``'2'`` is not an integer), unknown keys refused with a "did you mean",
one description per field. Checks that depend on how the file is being validated read pydantic's
validation context (:data:`CHECK_PATHS`, :data:`IS_TRAIN`) instead of any global state.
"""
import difflib
import inspect
import os
import re
from typing import Any, ClassVar, Dict, List, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, create_model, model_validator
from pydantic_core import PydanticCustomError
from typing_extensions import Annotated

# Keys of the validation context.
CHECK_PATHS = 'check_paths'  # False: validate a file away from its data (folders, weights need not exist)
IS_TRAIN = 'is_train'  # True: the file is read by ``basicsr train`` (training sections required)


class OptionError(ValueError):
    """A problem in an option file, with the file and the key path in the message."""


def context_flag(info, key):
    """A flag of the validation context (True when the caller gave no context)."""
    return bool((info.context or {}).get(key, True))


def problem(message, **values):
    """A problem found by a cross-field check. ``@key`` in ``message`` becomes the key's full path in the
    file (``@stages`` in the train section reads ``train.stages``); ``@`` alone is the section's path."""
    return PydanticCustomError('option_problem', message, {'message': message, **values})


class Section(BaseModel):
    """A section of an option file: strict types, no unknown keys (with a "did you mean" suggestion)."""

    model_config = ConfigDict(extra='forbid', strict=True, protected_namespaces=())

    # The class or function named in messages ("unknown key ... for EDSR"): by default the one value of the
    # section's ``type``; None: none.
    owner: ClassVar[Optional[str]] = None
    show_owner: ClassVar[bool] = True
    # Keys that are refused with their own explanation instead of "unknown key".
    refused: ClassVar[Dict[str, str]] = {}
    # Whether the options that run get this section's declared defaults (:func:`filled`). False where the
    # defaults belong to a signature (an arch's, a loss's): the callee applies them, the schema only shows them.
    fills_defaults: ClassVar[bool] = True
    always_filled: ClassVar[tuple] = ()  # keys filled even so: the schema's own keys beside a signature's

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get('type')
        tags = getattr(field.annotation, '__args__', ()) if field is not None else ()
        if cls.show_owner and 'owner' not in cls.__dict__ and len(tags) == 1 and isinstance(tags[0], str):
            cls.owner = tags[0]

    @classmethod
    def accepts_extra(cls, key):
        """Whether an undeclared key is allowed (sections with ``extra='allow'`` override this)."""
        return cls.model_config.get('extra') == 'allow'

    @classmethod
    def extra_hint(cls):
        """Text added to "unknown key" messages of this section (None: the "did you mean" suggestion)."""
        return None

    @model_validator(mode='before')
    @classmethod
    def _refuse_unknown_keys(cls, data):
        if not isinstance(data, dict):
            return data
        for key in data:
            if key in cls.model_fields:
                continue
            if key in cls.refused:
                raise problem(cls.refused[key])
            if not cls.accepts_extra(key):
                known = [name for name in cls.model_fields if name not in ('type', 'model_type')]
                raise PydanticCustomError('unknown_key', 'unknown key {key}', {
                    'key': str(key), 'owner': cls.owner,
                    'hint': close_match(key, known) or cls.extra_hint() or suggestion(key, known)})
        return data


def close_match(key, names):
    """``did you mean 'x'?`` for a key close to one of ``names``; None otherwise."""
    close = difflib.get_close_matches(str(key), [str(n) for n in names], n=1)
    return f'did you mean {close[0]!r}?' if close else None


def suggestion(key, names):
    close = difflib.get_close_matches(str(key), [str(n) for n in names], n=1)
    return f'did you mean {close[0]!r}?' if close else f'known keys: {", ".join(sorted(map(str, names)))}'


# ------------------------------------------------------------------------------------------------
# Paths that must exist when the file is validated with its data.

def _existing(kind, shipped=False):
    def check(value, info: ValidationInfo):
        path = os.path.expanduser(value)
        if shipped and value.startswith('shipped:'):  # a file of moesr_arch/weights
            from moesr_arch.weights import SCHEME, SHIPPED
            name = value[len(SCHEME):]
            if name not in SHIPPED:
                raise PydanticCustomError('no_such_model', 'no shipped model {name}; shipped: {known}',
                                          {'name': name, 'known': ', '.join(SHIPPED)})
            path = str(SHIPPED[name].path)
        if context_flag(info, CHECK_PATHS) and not os.path.exists(path):
            raise PydanticCustomError('no_such_path', 'no such {kind}: {path}', {'kind': kind, 'path': value})
        return value
    return AfterValidator(check)


ExistingFile = Annotated[str, _existing('file')]
# Weights: a file, or ``shipped:<name>`` for one of the package's shipped models (moesr_arch/weights).
WeightsFile = Annotated[str, _existing('file', shipped=True)]
ExistingPath = Annotated[str, _existing('file or folder')]
Number = float  # strict float accepts integers too: "any number"
PositiveInt = Annotated[int, Field(ge=1)]
# Which weights of a checkpoint to read: one entry, or several tried in order (the only way to fall back:
# a file without the entry asked is refused, moesr_arch/utils/checkpoint.py).
ParamKey = Union[str, Annotated[List[str], Field(min_length=1)]]


# ------------------------------------------------------------------------------------------------
# Schemas read from signatures: BasicSR's own archs, losses and metrics, torch's optimizers.

_ARG_LINE = re.compile(r'^\s*\**(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.+)$')


def argument_descriptions(obj):
    """``{argument: first line of its description}`` from a Google-style ``Args:`` docstring section."""
    doc = inspect.getdoc(obj) or ''
    if inspect.isclass(obj) and not re.search(r'^\s*Args:', doc, re.M):
        doc = inspect.getdoc(obj.__init__) or ''
    found, inside = {}, False
    for line in doc.splitlines():
        if re.match(r'^\s*(Args|Arguments|Parameters)\s*:\s*$', line):
            inside = True
            continue
        if inside and re.match(r'^\S', line):  # the next section
            inside = False
        match = _ARG_LINE.match(line) if inside else None
        if match:
            found.setdefault(match.group(1), match.group(3).strip())
    return found


def _type_of_default(default, loose_numbers):
    """The type a YAML value must have for an argument with this default (None accepted: any value)."""
    if default is inspect.Parameter.empty or default is None:
        return Any
    if isinstance(default, bool):
        return Optional[bool]
    if isinstance(default, int):
        return Optional[float if loose_numbers else int]
    if isinstance(default, float):
        return Optional[float]
    if isinstance(default, str):
        return Optional[str]
    if isinstance(default, (list, tuple)):
        return Optional[List[Any]]
    if isinstance(default, dict):
        return Optional[Dict[str, Any]]
    return Any


def _json_default(default):
    if isinstance(default, tuple):
        return list(default)
    if default is None or isinstance(default, (bool, int, float, str, list, dict)):
        return default
    return None


def signature_section(name, function, base, tag_field='type', skip=('self', ), loose_numbers=False, tags=None,
                      extra_fields=None):
    """A :class:`Section` for the keyword arguments of ``function``, keyed by ``tag_field: name``.

    The type of each argument is that of its default (an integer default takes any number with
    ``loose_numbers``: torch's optimizers write ``momentum=0`` for a float); arguments without a default
    are required; a function taking ``**kwargs`` accepts undeclared keys.
    """
    descriptions = argument_descriptions(function)
    qualname = getattr(function, '__qualname__', name)
    fields = {tag_field: (Literal[tuple(tags or (name, ))], Field(description=f'{qualname}'))}
    takes_any = False
    for arg, param in inspect.signature(function).parameters.items():
        if arg in skip:
            continue
        if param.kind is param.VAR_KEYWORD:
            takes_any = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        description = descriptions.get(arg) or f'Argument {arg} of {qualname}.'
        if param.default is inspect.Parameter.empty:
            fields[arg] = (Any, Field(description=description))
        else:
            fields[arg] = (_type_of_default(param.default, loose_numbers),
                           Field(default=_json_default(param.default), description=description))
    fields.update(extra_fields or {})
    if takes_any:
        base = loose(base)
    model = create_model(f'{name}_options', __base__=base, __module__=base.__module__,
                         __doc__=(inspect.getdoc(function) or name).splitlines()[0], **fields)
    model.owner = getattr(function, '__name__', name)
    model.fills_defaults = False  # the function's own defaults apply
    model.always_filled = tuple(extra_fields or ())
    return model


def loose(base):
    """``base`` accepting undeclared keys (a function taking ``**kwargs``, a dataset without a schema)."""
    return type(f'Loose{base.__name__}', (base, ), {'model_config': ConfigDict(extra='allow'),
                                                     '__module__': base.__module__})


# ------------------------------------------------------------------------------------------------
# The options that run: the file's values, with the declared defaults filled in.

def filled(validated, raw):
    """The option tree that runs, from a validated section ``validated`` and the data ``raw`` it was validated from.

    Values the file sets are the file's own (as YAML read them: pydantic's coercions are not applied); keys it
    leaves out get their declared default, except defaults of None (the key stays absent, as BasicSR expects of an
    optional key) and the defaults of sections whose callee owns them (``fills_defaults``).
    """
    import copy
    from collections import OrderedDict
    if isinstance(validated, Section):
        cls = type(validated)
        out = OrderedDict()
        for key, value in raw.items():  # the file's keys, in the file's order
            if key in cls.model_fields:
                out[key] = filled(getattr(validated, key), value)
            else:  # accepted extra keys (losses of train, keys of a dataset without a schema)
                out[key] = filled((validated.model_extra or {}).get(key), value)
        for key, field in cls.model_fields.items():
            if key not in out and (cls.fills_defaults or key in cls.always_filled) and not field.is_required() \
                    and field.default is not None:
                out[key] = copy.deepcopy(field.default)
        return out
    if isinstance(raw, dict) and isinstance(validated, dict):
        return OrderedDict((key, filled(validated.get(key), value)) for key, value in raw.items())
    if isinstance(raw, (list, tuple)) and isinstance(validated, (list, tuple)) and len(raw) == len(validated):
        return [filled(v, r) for v, r in zip(validated, raw)]
    return copy.deepcopy(raw)
