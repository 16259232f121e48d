"""Print a config as the tools use it: ``python tools/print_config.py CONFIG [--cfg-options KEY=VALUE ...]``.

Its ``_base_`` files are merged in and the overrides applied. The output is config-file syntax
(one ``name = value`` line per top-level key, values as Python literals), so it can be saved and
used as a self-contained config.
"""

import argparse
import pprint
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsegnext.apis import load_config  # noqa: E402
from jsegnext.config import ConfigError  # noqa: E402


def format_config(cfg):
    """Config-file text of ``cfg``: ``name = <literal>`` per top-level key, ``filename`` as a comment."""
    values = cfg.to_dict()
    lines = [f"# {values.pop('filename')}, bases merged and overrides applied"] if "filename" in values else []
    for name, value in values.items():
        prefix = f"{name} = "
        text = pprint.pformat(value, width=100 - len(prefix), sort_dicts=False)
        lines.append(prefix + text.replace("\n", "\n" + " " * len(prefix)))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print a resolved jsegnext config")
    parser.add_argument("config")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(format_config(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
