"""`evolink` command line: serve | sandbox | doctor | pair | demo | link | secrets.

Each sub-command lives in the layer that owns it and is imported lazily, so `evolink doctor` works
even when optional parts (e.g. the database driver) are broken, and start-up stays fast.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> "module:function"; the function takes argv (list[str]) and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("evolink.api.serve_cli:main", "run the HTTP gateway (add --sandbox for an embedded sandbox)"),
    "sandbox": ("evolink.sandbox.cli:main", "run the WhatsApp-like sandbox server with simulated phones"),
    "doctor": ("evolink.doctor:main", "deploy checklist: clock, timezone, database, upstream"),
    "pair": ("evolink.wa.pair_cli:main", "link one device from the terminal (QR or code)"),
    "demo": ("evolink.api.demo_cli:main", "scripted full link through an embedded sandbox, with timings"),
    "link": ("evolink.client.cli:main", "link a phone to an instance of a running gateway (code or QR)"),
    "secrets": ("evolink.api.secrets_cli:main", "rotate the key that seals stored creds (secrets rotate)"),
}


def _usage() -> str:
    lines = ["usage: evolink <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from evolink import __version__

        print(f"evolink {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"evolink: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    target = COMMANDS[name][0]
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    rc = getattr(module, func_name)(rest)
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
