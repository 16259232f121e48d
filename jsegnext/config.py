"""Python config files.

A config is a plain Python file; its public top-level names (not modules, functions or names
starting with ``_``) become the config. Values are read with attribute or item access::

    cfg = Config.fromfile('configs/segnext_t_ade20k.py')
    cfg.model.decode_head.num_classes        # 150
    cfg.merge_options(['model.decode_head.dropout_ratio=0.2'])

A config may start from others, mmsegmentation style: ``_base_ = ['_base_/models/segnext_t.py', ...]``
(paths relative to the file). The bases' keys are pooled (two bases setting the same key is an
error), then the file's own values are merged on top: dicts key by key, any other value (lists
included) replaces. Bases are one level deep: a base has no ``_base_`` of its own.

Overrides may only change keys that exist (a typo is an error, with a suggestion), or add one
that the dict's ``accepts`` schema allows (:func:`jsegnext.config_check.accepted_keys`, which
:func:`jsegnext.apis.load_config` passes).
"""

import ast
import copy
import difflib
import runpy
import types
from pathlib import Path

from .errors import ConfigError  # noqa: F401  (importable from here as before)


def did_you_mean(name, choices):
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Config(dict):
    """A dict with attribute access, nested dicts converted on the way in."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __setitem__(self, key, value):
        super().__setitem__(key, _wrap(value))

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}{did_you_mean(name, self)}") from None

    def __setattr__(self, name, value):
        self[name] = value

    def __deepcopy__(self, memo):
        return Config(copy.deepcopy(dict(self), memo))

    def to_dict(self):
        return _unwrap(self)

    @classmethod
    def fromfile(cls, path):
        """The config a file defines, its ``_base_`` files merged in; ``filename`` records the path."""
        values, bases = _run_config_file(Path(path))
        cfg = cls(merge_config(_pool_bases(path, bases), values, str(path)))
        dict.__setitem__(cfg, "filename", str(path))
        return cfg

    def merge_options(self, options, accepts=None):
        """Apply ``key.sub=value`` overrides; values are Python literals or plain strings.

        ``accepts(path, node)`` names the keys the dict ``node`` at dotted ``path`` may gain (None:
        only existing keys may be set).
        """
        for option in options or []:
            if "=" not in option:
                raise ConfigError(f"override {option!r} is not of the form key=value")
            key, text = option.split("=", 1)
            self.set_path(key.strip(), parse_value(text.strip()), accepts)
        return self

    def set_path(self, dotted, value, accepts=None):
        node, parts = self, dotted.split(".")
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"unknown config key {where!r}: not an index of a list of {len(node)}")
                part = int(part)
            elif not isinstance(node, dict) or part not in node:
                allowed = []
                if accepts is not None and isinstance(node, dict) and depth == len(parts) - 1:
                    allowed = accepts(".".join(parts[:depth]), node) or []
                if part not in allowed:
                    choices = list(node.keys()) + list(allowed) if isinstance(node, dict) else []
                    raise ConfigError(f"unknown config key {where!r}{did_you_mean(str(part), choices)}")
            if depth == len(parts) - 1:
                node[part] = _wrap(value)
            else:
                node = node[part]


def _run_config_file(path):
    """(public top-level names of the file, its ``_base_`` paths resolved against its folder)."""
    try:
        namespace = runpy.run_path(str(path))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except SyntaxError as err:
        raise ConfigError(f"{path}: syntax error on line {err.lineno}: {err.msg}") from None
    bases = namespace.get("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    public = {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_") and not isinstance(v, (types.ModuleType, types.FunctionType, type))
    }
    return public, [path.parent / b for b in bases]


def _pool_bases(path, bases):
    """The union of the bases' keys; a key set by two bases is an error (as in mmseg)."""
    pooled, origin = {}, {}
    for base in bases:
        if not base.is_file():
            raise ConfigError(f"{path}: base config not found: {base}")
        values, nested = _run_config_file(base)
        if nested:
            raise ConfigError(f"{base}: a base config cannot have a _base_ of its own (bases are one level deep)")
        for key in values:
            if key in pooled:
                raise ConfigError(f"{path}: key {key!r} is set by two bases, {origin[key]} and {base}")
            origin[key] = base
        pooled.update(values)
    return pooled


def merge_config(base, override, where, prefix=""):
    """mmseg's merge rule: a dict merges into the base's dict key by key; any other value replaces."""
    merged = dict(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "_delete_" in value:
            raise ConfigError(
                f"{where}: '{name}._delete_' is not supported (a dict merges into the base's dict key by key)"
            )
        if isinstance(value, dict) and key in merged:
            if not isinstance(merged[key], dict):
                raise ConfigError(f"{where}: '{name}' is a dict here but a {type(merged[key]).__name__} in the base")
            value = merge_config(merged[key], value, where, f"{name}.")
        merged[key] = value
    return merged


def parse_value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if text.lower() in ("none", "null"):
            return None
        return text


def _wrap(value):
    if isinstance(value, Config):
        return value
    if isinstance(value, dict):
        return Config(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _unwrap(value):
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    return value


def check_kwargs(func, kwargs, where):
    """Raise ConfigError naming ``where.key`` for any key ``func`` (a function, or a class: its
    ``__init__`` and those its ``**kwargs`` pass to) does not accept."""
    import inspect

    if isinstance(func, type):
        from .config_check import init_params

        allowed = init_params(func)
    else:
        params = inspect.signature(func).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        allowed = [name for name in params if name != "self"]
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(f"unknown config key '{where}.{key}'{did_you_mean(key, allowed)}")
