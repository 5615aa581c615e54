"""`lmlab experiment NAME ...`: the paper reproductions in lmlab/experiments/."""
from __future__ import annotations


def register(sub) -> None:
    from ..experiments import discover

    p = sub.add_parser("experiment", help="run a paper reproduction and write its report")
    names = p.add_subparsers(dest="experiment", metavar="NAME")
    for name, module in sorted(discover().items()):
        q = names.add_parser(name, help=getattr(module, "HELP", ""))
        if hasattr(module, "add_arguments"):
            module.add_arguments(q)
        q.set_defaults(func=module.run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
