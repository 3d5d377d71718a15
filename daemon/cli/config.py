"""`portbell config path|check|show`: where the configuration is, whether it is right, what it says."""

from __future__ import annotations

import json
from pathlib import Path

from .. import paths
from ..errors import UsageError


def config_path(args, must_exist: bool = True) -> Path:
    """The configuration file: `--config PATH`, which must exist (a typo is not the defaults),
    else the default place, where no file means the defaults."""
    if not getattr(args, "config", None):
        return paths.config_file()
    path = Path(args.config)
    if must_exist and not path.exists():  # /dev/null stays a way to say "no configuration"
        raise UsageError(f"--config {path}: no such file")
    return path


def cmd_config(args) -> int:
    from .. import config as configmod
    from ..sinks import validate

    path = config_path(args, must_exist=args.action != "path")
    if args.action == "path":
        print(path)
        return 0
    config = configmod.load(path, sinks_check=validate)  # ConfigError -> exit 2
    if args.action == "check":
        print(f"{path}: OK" if path.exists() else f"{path} does not exist: the defaults apply (that is fine)")
        return 0
    print(json.dumps(config.to_dict(), indent=2))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="configuration: path, check, show")
    p.add_argument("action", choices=("path", "check", "show"), help="path: where it is; check: is it right; show: what it says, defaults included")
    p.add_argument("--config", metavar="PATH", help="another file than the default")
    p.set_defaults(func=cmd_config)
