"""`portbell config path|check|show`: where the configuration is, whether it is right, what it says."""

from __future__ import annotations

from pathlib import Path


def config_path(args) -> Path:
    from .. import paths

    return Path(args.config) if getattr(args, "config", None) else paths.config_file()


def cmd_config(args) -> int:
    from .. import config as configmod
    from ..sinks import validate

    path = config_path(args)
    if args.action == "path":
        print(path)
        return 0
    config = configmod.load(path, sinks_check=validate)  # ConfigError -> exit 2
    if args.action == "check":
        print(f"{path}: OK" if path.exists() else f"{path} does not exist: the defaults apply (that is fine)")
        return 0
    import json

    print(json.dumps(config.to_dict(), indent=2))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="configuration: path, check, show")
    p.add_argument("action", choices=("path", "check", "show"))
    p.add_argument("--config", metavar="PATH", help="another file than the default")
    p.set_defaults(func=cmd_config)
