"""Python config files.

A config is a plain Python file; its public top-level names (not modules, functions or names
starting with ``_``) become the config. Values are read with attribute or item access::

    cfg = Config.fromfile('configs/segnext_t_ade20k.py')
    cfg.model.decode_head.num_classes        # 150
    cfg.merge_options(['model.decode_head.dropout_ratio=0.2'])

Overrides may only change keys that exist (a typo is an error, with a suggestion), or add one
that the dict's ``accepts`` schema allows (:func:`jsegnext.config_check.accepted_keys`, which
:func:`jsegnext.apis.load_config` passes).
"""
import ast
import copy
import difflib
import runpy
import types

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
        try:
            namespace = runpy.run_path(str(path))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except SyntaxError as err:
            raise ConfigError(f"{path}: syntax error on line {err.lineno}: {err.msg}") from None
        public = {k: v for k, v in namespace.items()
                  if not k.startswith("_") and not isinstance(v, (types.ModuleType, types.FunctionType, type))}
        cfg = cls(public)
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
            where = ".".join(parts[:depth + 1])
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
