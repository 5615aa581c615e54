"""The chat template for lmlab models, which are trained on plain text and carry none.

Each message becomes a speech in the layout of a play script, the text the demo models know:

    USER:
    How now?

    ASSISTANT:
    (the model continues here)

i.e. the role in capitals, a colon, a newline, the content, a blank line; the prompt ends with
"ASSISTANT:\\n". A blank line ends the assistant's turn, so END_OF_TURN is a stop string of every
chat request (besides the request's own). JINJA is the same template for clients that render it
themselves (served in /tokenizer_info, as lm-eval's remote tokenizer reads it).
"""
from __future__ import annotations

ROLES = ("system", "user", "assistant")
END_OF_TURN = "\n\n"
JINJA = ("{% for m in messages %}{{ m['role'] | upper }}:\n{{ m['content'] }}\n\n{% endfor %}"
         "{% if add_generation_prompt %}ASSISTANT:\n{% endif %}")


def render(messages: list[dict]) -> str:
    """The prompt for `messages` (each {"role", "content"}, content already a string)."""
    return "".join(f"{m['role'].upper()}:\n{m['content']}\n\n" for m in messages) + "ASSISTANT:\n"
