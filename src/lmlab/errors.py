"""One exception type for mistakes a user can fix; the CLI prints it as one line."""


class LmlabError(Exception):
    """A user-facing error: bad config, bad corpus, bad checkpoint, bad prompt."""
