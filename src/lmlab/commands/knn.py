"""`lmlab knn build RUN --data CORPUS -o STORE`: a kNN-LM datastore for a trained model."""
from __future__ import annotations

from .common import COUNT, NONNEG_INT, add_run_args, load_model_arg, new_path, print_json, writing_into


def register(sub) -> None:
    p = sub.add_parser("knn", help="kNN-LM datastores")
    verbs = p.add_subparsers(dest="knn_verb", metavar="VERB")
    b = verbs.add_parser("build", help="one entry per target token of a corpus: key = the last block's normed "
                         "FFN input, value = the next token")
    add_run_args(b)
    b.add_argument("--data", required=True, help="a corpus spec (name, file, directory, .jsonl)")
    b.add_argument("-o", "--out", required=True, metavar="STORE", type=new_path,
                   help="datastore directory to create (inside a run directory: under that run's lock)")
    b.add_argument("--split", default="train", choices=["train", "val", "all"],
                   help="which part of the corpus (split like training: the last data.val_fraction is val)")
    b.add_argument("--index", default="auto", choices=["auto", "flat", "ivfpq"],
                   help="faiss index: exact Flat, compressed IVF-PQ, or chosen by size")
    b.add_argument("--max-tokens", type=NONNEG_INT, default=0, help="use at most this many tokens (0 = all)")
    b.add_argument("--batch-size", type=COUNT, default=8)
    b.set_defaults(func=build)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def build(args) -> int:
    from ..infer import knnlm

    knnlm.faiss_module()  # fail before the model is loaded if faiss is missing
    with writing_into(args.out):
        return _build(args)


def _build(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..data.corpora import read_corpus
    from ..data.shards import encode_documents, split
    from ..infer import knnlm

    model, tokenizer, cfg = load_model_arg(args.run, args.device)
    ids = encode_documents(read_corpus(args.data, cfg.data.text_field, cfg.data.cache_dir), tokenizer)
    if args.split != "all":
        train, val = split(ids, cfg.data.val_fraction, 2)
        ids = train if args.split == "train" else val
    ids = np.asarray(ids, dtype=np.int64)
    if args.max_tokens:
        ids = ids[: args.max_tokens + 1]
    with tqdm(total=max(len(ids) - 1, 0), unit="tok", desc="kNN datastore", leave=False) as bar:
        path = knnlm.build(model, ids, args.out, args.index, args.batch_size,
                           meta={"run": str(args.run), "data": args.data, "split": args.split},
                           progress=bar.update)
    store = knnlm.Datastore.load(path)
    print_json({"store": str(path), **store.meta})
    return 0
