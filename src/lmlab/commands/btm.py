"""`lmlab btm seed|branch|train|merge|ensemble`: Branch-Train-Merge (train/btm.py, eval/ensemble.py)."""
from __future__ import annotations

from ..options import COUNT, NONNEG_INT
from .common import add_config_args, print_json


def register(sub) -> None:
    p = sub.add_parser("btm", help="Branch-Train-Merge: seed, branch domain experts, train, merge or ensemble")
    verbs = p.add_subparsers(dest="btm_verb", metavar="{seed,branch,train,merge,ensemble}")
    verbs.required = True

    s = verbs.add_parser("seed", help="train the seed model (on all domains) in BTM/seed")
    add_config_args(s)
    s.add_argument("-o", "--out", required=True, metavar="BTM", help="the BTM directory")
    s.set_defaults(func=run_seed)

    b = verbs.add_parser("branch", help="one expert per domain, from the seed's weights")
    b.add_argument("btm", metavar="BTM")
    b.add_argument("domains", nargs="+", metavar="NAME=CORPUS", help="expert name and its corpus (file, directory, name)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a field of the experts' config (e.g. train.max_steps)")
    b.set_defaults(func=run_branch)

    t = verbs.add_parser("train", help="train every expert (or --only some) on its own domain")
    t.add_argument("btm", metavar="BTM")
    t.add_argument("--only", action="append", default=[], metavar="NAME")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    t.set_defaults(func=run_train)

    m = verbs.add_parser("merge", help="average the experts' weights into one ordinary run")
    m.add_argument("btm", metavar="BTM")
    m.add_argument("-o", "--out", required=True, help="the merged run directory")
    m.add_argument("--dev", help="weights = the domain posterior on a few sequences of this text (default: uniform)")
    m.add_argument("--dev-sequences", type=COUNT, default=8)
    m.add_argument("--only", action="append", default=[], metavar="NAME")
    m.set_defaults(func=run_merge)

    e = verbs.add_parser("ensemble", help="score a text with the posterior-weighted ensemble of the experts (JSON)")
    e.add_argument("btm", metavar="BTM")
    e.add_argument("--data", required=True, help="a UTF-8 text file or corpus spec to score")
    e.add_argument("--dev", help="the prior from a few sequences of this text (default: uniform)")
    e.add_argument("--dev-sequences", type=COUNT, default=8)
    e.add_argument("--max-tokens", type=NONNEG_INT, default=0, help="score at most this many tokens (0 = all)")
    e.add_argument("--batch-size", type=COUNT, default=8)
    e.add_argument("--only", action="append", default=[], metavar="NAME")
    e.set_defaults(func=run_ensemble)


def run_seed(args) -> int:
    from .. import config
    from ..train import btm

    print_json(btm.seed(config.load(args.config, args.overrides), args.out))
    return 0


def run_branch(args) -> int:
    from ..errors import LmlabError
    from ..train import btm

    domains = {}
    for item in args.domains:
        if "=" not in item:
            raise LmlabError(f"{item!r} must look like NAME=CORPUS")
        name, corpus = item.split("=", 1)
        domains[name] = corpus
    print_json({"experts": [str(p) for p in btm.branch(args.btm, domains, args.overrides)]})
    return 0


def run_train(args) -> int:
    from ..train import btm

    print_json(btm.train_experts(args.btm, args.only or None, args.overrides))
    return 0


def _ids(spec: str, tokenizer, cfg, max_tokens: int = 0):
    import numpy as np

    from ..data.corpora import read_corpus
    from ..data.shards import encode_documents

    ids = np.asarray(encode_documents(read_corpus(spec, cfg.data.text_field, cfg.data.cache_dir), tokenizer),
                     dtype=np.int64)
    return ids[: max_tokens + 1] if max_tokens else ids


def _prior(args, models, tokenizer, cfg):
    from ..eval import ensemble

    if not args.dev:
        return None
    seqs = ensemble.dev_sequences(_ids(args.dev, tokenizer, cfg), args.dev_sequences, models[0].cfg.context)
    return ensemble.prior_from_sequences(models, seqs)


def run_merge(args) -> int:
    import numpy as np

    from ..train import btm

    weights = None
    if args.dev:
        _, models, tokenizer, cfgs = btm.load_experts(args.btm, args.only or None)
        weights = np.exp(_prior(args, models, tokenizer, cfgs[0])).tolist()
    print_json(btm.merge(args.btm, args.out, weights, args.only or None))
    return 0


def run_ensemble(args) -> int:
    from ..eval import ensemble
    from ..train import btm

    names, models, tokenizer, cfgs = btm.load_experts(args.btm, args.only or None)
    log_prior = _prior(args, models, tokenizer, cfgs[0])
    out = ensemble.evaluate_ids(models, _ids(args.data, tokenizer, cfgs[0], args.max_tokens),
                                tokenizer.token_nbytes(), log_prior, args.batch_size)
    out["experts"] = dict(zip(names, out["experts"]))
    out["prior"] = dict(zip(names, out["prior"]))
    out["mean_posterior"] = dict(zip(names, out["mean_posterior"]))
    print_json(out)
    return 0
