"""CLI verbs. Every module in this package that defines `register(subparsers)` adds its own verb(s),
so features plug into `lmlab` without editing cli.py. A verb's handler is set with
`parser.set_defaults(func=handler)`; a handler takes the parsed args and returns an exit code."""
