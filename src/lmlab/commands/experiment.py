"""`lmlab experiment NAME ...`: the paper reproductions in lmlab/experiments/; `all` and `index`."""
from __future__ import annotations


def register(sub) -> None:
    from ..experiments import discover, suite

    p = sub.add_parser("experiment", help="run a paper reproduction and write its report")
    names = p.add_subparsers(dest="experiment", metavar="NAME")
    for name, module in sorted(discover().items()):
        q = names.add_parser(name, help=getattr(module, "HELP", ""))
        if hasattr(module, "add_arguments"):
            module.add_arguments(q)
        q.set_defaults(func=module.run)
    q = names.add_parser("all", help="every experiment above in one go (--quick: each one's smoke run), then index")
    suite.add_all_arguments(q)
    q.set_defaults(func=suite.run_all)
    q = names.add_parser("index", help="docs/experiments/README.md: the claims of every results JSON in one table")
    suite.add_index_arguments(q)
    q.set_defaults(func=suite.run_index)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
