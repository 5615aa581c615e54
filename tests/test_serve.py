"""`lmlab serve` through the real OpenAI client and raw HTTP: completions, chat, streaming, logprobs,
stops, n, seeds, scoring as lm-eval does it, errors, continuous batching, disconnects, SIGTERM."""
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
try:  # the openai client's own HTTP library: httpx2 in recent releases, httpx before
    import httpx2 as httpx
except ImportError:
    httpx = pytest.importorskip("httpx")

from serve_helpers import running_server, wait_until  # noqa: E402

KEY = "test-key-123"


@pytest.fixture(scope="module")
def server(tiny_run):
    with running_server(tiny_run, api_key=KEY, max_batch=4) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def post(server, path, body, key=KEY, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + path, headers=headers, timeout=60,
                      **({"content": body} if isinstance(body, (bytes, str)) else {"json": body}), **kw)


def greedy(client, prompt, n=20, **kw):
    return client.completions.create(model="tiny", prompt=prompt, max_tokens=n, temperature=0, **kw)


def test_models_health_and_an_in_process_greedy_match(server, client):
    from lmlab.infer.generate import generate

    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"  # no key needed for health and page
    r = greedy(client, "ROMEO:", 30)
    c = r.choices[0]
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == "tiny" and r.created > 0
    assert c.finish_reason == "length" and r.usage.completion_tokens == 30
    assert r.usage.prompt_tokens == len(server.tokenizer.encode("ROMEO:"))
    assert r.usage.total_tokens == r.usage.prompt_tokens + 30
    # the same tokens as `lmlab generate` at temperature 0 (the batched decode rounds differently in the
    # last float bits, far below the gaps between this model's top logits)
    assert c.text == generate(server.model, server.tokenizer, "ROMEO:", max_new_tokens=30, temperature=0)


def test_streaming_equals_non_streaming(client):
    for kw in ({"temperature": 0}, {"temperature": 1.0, "seed": 5, "top_p": 0.9, "extra_body": {"top_k": 20}}):
        whole = client.completions.create(model="tiny", prompt="KING:", max_tokens=25, **kw)
        chunks = list(client.completions.create(model="tiny", prompt="KING:", max_tokens=25, stream=True,
                                                stream_options={"include_usage": True}, **kw))
        assert len({c.id for c in chunks}) == 1
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        assert text == whole.choices[0].text
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 25
        assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_chat_non_streaming_and_streaming(server, client):
    from lmlab.serve import chat

    messages = [{"role": "system", "content": "Hi."}, {"role": "user", "content": "Who?"}]
    r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=20, temperature=0)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant"
    prompt = chat.render(messages)
    assert prompt == "SYSTEM:\nHi.\n\nUSER:\nWho?\n\nASSISTANT:\n"
    assert r.usage.prompt_tokens == len(server.tokenizer.encode(prompt))
    assert post(server, "/tokenize", {"messages": messages}).json()["count"] == r.usage.prompt_tokens
    parts = [{**m, "content": [{"type": "text", "text": m["content"][:2]}, {"type": "text", "text": m["content"][2:]}]}
             for m in messages]  # content given as text parts reads the same
    assert post(server, "/tokenize", {"messages": parts}).json()["tokens"] == server.tokenizer.encode(prompt)
    assert chat.END_OF_TURN not in c.message.content
    assert (c.finish_reason == "length") == (r.usage.completion_tokens == 20)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=20, temperature=0,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and len({k.id for k in chunks}) == 1
    assert all(k.object == "chat.completion.chunk" for k in chunks)
    assert "".join(k.choices[0].delta.content or "" for k in chunks) == c.message.content
    assert chunks[-1].choices[0].finish_reason == c.finish_reason


def test_logprobs_join_to_the_text(client):
    r = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=30, temperature=1.0, seed=3, logprobs=3)
    c = r.choices[0]
    lp = c.logprobs
    assert "".join(lp.tokens) == c.text and len(lp.tokens) == 30
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(30)]
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert value <= 0 and 3 <= len(top) <= 4 and max(top.values()) >= value
    streamed = list(client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=30, temperature=1.0, seed=3,
                                              logprobs=3, stream=True))
    tokens = [t for k in streamed if k.choices and k.choices[0].logprobs for t in k.choices[0].logprobs.tokens]
    assert tokens == lp.tokens
    ch = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=15,
                                        temperature=0, logprobs=True, top_logprobs=2)
    content = ch.choices[0].logprobs.content
    assert "".join(t.token for t in content) == ch.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and bytes(t.bytes).decode() == t.token for t in content)


def test_stop_strings_are_never_streamed(client):
    def run(**kw):
        return client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=40, temperature=1.0, seed=2, **kw)

    full = run().choices[0].text
    stop = full[20:23]
    cut = full[:full.find(stop)]
    assert len(cut) >= 5
    r = run(stop=[stop, "zzzz"])
    assert r.choices[0].text == cut and r.choices[0].finish_reason == "stop"
    pieces = [k.choices[0].text for k in run(stop=stop, stream=True)]
    assert "".join(pieces) == cut
    assert "".join(run(stop=stop, logprobs=1).choices[0].logprobs.tokens) == cut
    at_once = run(stop=full[:3], logprobs=1).choices[0]
    assert at_once.text == "" and at_once.logprobs.tokens == [] and at_once.finish_reason == "stop"


def test_n_and_seeds(client):
    kw = dict(model="tiny", prompt="To be", max_tokens=20, temperature=1.0)
    a = client.completions.create(n=3, seed=11, **kw)
    b = client.completions.create(n=3, seed=11, **kw)
    texts = [c.text for c in sorted(a.choices, key=lambda c: c.index)]
    assert [c.index for c in a.choices] == [0, 1, 2] and texts == [c.text for c in b.choices]
    assert len(set(texts)) == 3
    assert client.completions.create(seed=12, **kw).choices[0].text == texts[1]  # choice j uses seed + j
    assert a.usage.completion_tokens == 60
    two = client.completions.create(model="tiny", prompt=["To be", "KING:"], max_tokens=5, temperature=0, n=2)
    assert [c.index for c in two.choices] == [0, 1, 2, 3]
    assert two.choices[2].text == greedy(client, "KING:", 5).choices[0].text


def test_batched_greedy_equals_alone(server, client):
    prompts = ["ROMEO:", "To be, or not to be", "K", "What light, yonder?"]
    alone = [greedy(client, p, 40).choices[0].text for p in prompts]
    by_ids = greedy(client, server.tokenizer.encode(prompts[1]), 40).choices[0].text
    assert by_ids == alone[1]
    noise = dict(model="tiny", prompt="Noise", max_tokens=40, temperature=1.0, seed=1)
    before = server.load()["generated_tokens"]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):  # each round: the four greedy prompts beside sampled ones, in changing slots
            greedy_jobs = [pool.submit(greedy, client, p, 40) for p in prompts]
            noise_jobs = [pool.submit(client.completions.create, **noise) for _ in range(3)]
            assert [j.result().choices[0].text for j in greedy_jobs] == alone
            [j.result() for j in noise_jobs]
    assert server.load()["peak_running"] == 4  # they did share the batch
    assert server.load()["generated_tokens"] - before == 3 * 7 * 40


def test_a_bounded_load_of_mixed_requests_completes_and_leaves_the_server_idle(server, client):
    """48 requests from 16 threads (streams, plain ones, streams dropped after a few chunks), a fixed
    count under a timeout: every one is answered, the usage counts add up to what the engine made."""
    before = server.load()["generated_tokens"]

    def one(i):
        kw = dict(model="tiny", prompt=["ROMEO:", "To be", "K"][i % 3], max_tokens=20, temperature=1.0, seed=i)
        if i % 4 == 3:  # a client that leaves mid-stream
            stream = client.completions.create(stream=True, **kw)
            next(iter(stream))
            stream.close()
            return None
        if i % 2:
            chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
            return chunks[-1].usage.completion_tokens
        return client.completions.create(**kw).usage.completion_tokens

    with ThreadPoolExecutor(16) as pool:
        counted = [f.result(timeout=120) for f in [pool.submit(one, i) for i in range(48)]]
    wait_until(lambda: server.load()["running"] == 0 and server.load()["waiting"] == 0, what="an idle server")
    made = server.load()["generated_tokens"] - before
    answered = sum(c for c in counted if c is not None)
    assert answered <= made <= answered + 12 * 20  # the dropped streams made some tokens too, at most all theirs


def test_prompt_scoring_as_lm_eval_does_it(server):
    """lm-eval's local-completions: token ids, echo, max_tokens 1, logprobs 1; the log-likelihood of the
    continuation is sum(token_logprobs[ctxlen:-1]). It must equal the in-process one."""
    tok, model = server.tokenizer, server.model
    pairs = [("The king is", " dead"), ("ROMEO:\n", "O, she doth teach the torches")]
    payload = {"model": "tiny", "prompt": [tok.encode(c) + tok.encode(x) for c, x in pairs], "temperature": 0,
               "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True}
    out = post(server, "/v1/completions", payload).json()
    for (ctx, cont), choice in zip(pairs, sorted(out["choices"], key=lambda c: c["index"])):
        ctxlen, ids = len(tok.encode(ctx)), tok.encode(ctx) + tok.encode(cont)
        served = sum(choice["logprobs"]["token_logprobs"][ctxlen:-1])
        with torch.no_grad():
            lp = model(torch.tensor([ids]))[0][0].float().log_softmax(-1)
        local = sum(float(lp[i - 1, ids[i]]) for i in range(ctxlen, len(ids)))
        assert served == local
        greedy_ok = all(lp[i - 1].argmax() == ids[i] for i in range(ctxlen, len(ids)))
        tops = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        assert greedy_ok == all(t == max(top.values()) for t, top in
                                zip(choice["logprobs"]["token_logprobs"][ctxlen:-1], tops))
        assert choice["text"].startswith(ctx + cont)
    zero = post(server, "/v1/completions", {**payload, "prompt": "ROMEO:", "max_tokens": 0}).json()["choices"][0]
    assert zero["text"] == "ROMEO:" and zero["logprobs"]["token_logprobs"][0] is None
    assert "".join(zero["logprobs"]["tokens"]) == "ROMEO:" and len(zero["logprobs"]["tokens"]) == 6


def test_tokenize_detokenize_and_tokenizer_info(server):
    ids = post(server, "/tokenize", {"prompt": "Héllo 🦄", "add_special_tokens": False}).json()["tokens"]
    assert ids == server.tokenizer.encode("Héllo 🦄")
    assert post(server, "/detokenize", {"tokens": ids}).json()["prompt"] == "Héllo 🦄"
    info = httpx.get(server.url + "/tokenizer_info", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["eos_token"] == "<|endoftext|>" and "ASSISTANT" in info["chat_template"]


@pytest.mark.parametrize("body, fragment", [
    ({"prompt": "x", "max_tokens": 5, "temperature": "hot"}, "'temperature' must be a number"),
    ({"prompt": "x", "max_tokens": 5, "frobnicate": 1}, "unknown field 'frobnicate'"),
    ({"prompt": "x", "max_tokens": True}, "'max_tokens' must be an integer"),
    ({"prompt": "x", "n": 17}, "'n' must be in [1, 16]"),
    ({"prompt": "x", "max_tokens": 64}, "exceeds the model's context of 64"),
    ({"prompt": "x" * 65, "max_tokens": 1}, "longer than the model's context"),
    ({"prompt": ""}, "empty"),
    ({"prompt": [1, 2, 99999]}, "outside"),
    ({"prompt": "x", "logprobs": 21}, "'logprobs' must be in [0, 20]"),
    ({"prompt": "x", "stop": [1]}, "'stop' must be a string or an array of strings"),
    ({"max_tokens": 3}, "'prompt' is required"),
    ({"prompt": "x", "model": "gpt-4"}, "not served here"),
    ([1, 2], "must be a JSON object"),
    ('{"prompt": "x",', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_bad_requests_are_400_with_an_error_object(server, body, fragment):
    r = post(server, "/v1/completions", body if not isinstance(body, list) else json.dumps(body))
    assert r.status_code == (404 if "served" in fragment else 400), r.text
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"]


def test_more_bad_requests(server, client):
    big = json.dumps({"prompt": "x" * (1 << 20 + 1)})
    r = post(server, "/v1/completions", big)
    assert r.status_code == 400 and "over the limit" in r.json()["error"]["message"]
    r = post(server, "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]})
    assert r.status_code == 400 and "role" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[], max_tokens=3)
    r = post(server, "/v1/completions", {"prompt": ["x"] * 40, "n": 2, "max_tokens": 1})
    assert r.status_code == 400 and "queues at most 64" in r.json()["error"]["message"]
    odd = post(server, "/v1/completions", '{"prompt": "a\\ud800b", "max_tokens": 2, "echo": true, "seed": %d, '
               '"n": 2}' % ((1 << 63) - 1))  # a lone surrogate, and a seed whose second choice wraps around
    assert odd.status_code == 200 and odd.json()["choices"][0]["text"].startswith("a\ud800b")
    assert post(server, "/detokenize", {"tokens": [0xED, 0xA0, 0x80]}).json()["prompt"] == "\ud800"
    assert httpx.get(server.url + "/nowhere").status_code == 404
    assert httpx.get(server.url + "/v1/completions").status_code == 405
    assert greedy(client, "still fine", 3).choices[0].finish_reason == "length"


def test_api_key_is_required(server):
    for key in (None, "wrong-key"):
        r = post(server, "/v1/completions", {"prompt": "x", "max_tokens": 2}, key=key)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()
    assert httpx.get(server.url + "/").status_code == 200  # the page itself holds no data


@pytest.fixture(scope="module")
def long_server(tiny_run):
    with running_server(tiny_run, max_batch=2, context=8192) as s:
        yield s


def test_a_disconnect_mid_stream_frees_the_slot(long_server):
    before = long_server.load()["generated_tokens"]
    with httpx.stream("POST", long_server.url + "/v1/completions", timeout=60,
                      json={"prompt": "ROMEO:", "max_tokens": 8000, "stream": True, "temperature": 0}) as r:
        lines = r.iter_lines()
        got = [line for line, _ in zip(lines, range(6)) if line.startswith("data: ")]
        assert len(got) >= 3
        assert long_server.load()["running"] == 1
    wait_until(lambda: long_server.load()["running"] == 0, what="the slot to be freed")
    assert long_server.load()["generated_tokens"] - before < 8000


def test_a_full_queue_answers_429_with_retry_after(tiny_run):
    with running_server(tiny_run, max_batch=1, max_queue=1, context=8192) as s:
        with httpx.stream("POST", s.url + "/v1/completions", timeout=60,
                          json={"prompt": "ROMEO:", "max_tokens": 8000, "stream": True, "temperature": 0}) as r:
            lines = r.iter_lines()  # kept: a dropped iterator closes the stream
            next(lines)
            waiting = ThreadPoolExecutor(1).submit(httpx.post, s.url + "/v1/completions", timeout=60,
                                                   json={"prompt": "B", "max_tokens": 3, "temperature": 0})
            wait_until(lambda: s.load()["waiting"] == 1, what="the second request to queue")
            busy = httpx.post(s.url + "/v1/completions", json={"prompt": "C", "max_tokens": 3}, timeout=60)
            assert busy.status_code == 429 and int(busy.headers["retry-after"]) >= 1
            assert busy.json()["error"]["type"] == "rate_limit_error"
            assert s.load()["running"] == 1
        # the stream's client left: its slot goes to the queued request, which completes
        assert waiting.result().status_code == 200
        assert waiting.result().json()["usage"]["completion_tokens"] == 3


def test_sigterm_drains_running_requests_then_exits(tiny_run):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmlab.cli", "serve", str(tiny_run), "--port", "0",
                             "--lm-infinite", "--max-tokens-limit", "100000", "--dtype", "float32"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = proc.stderr.readline()
        assert "serving" in banner, banner
        url = banner.split(" on ")[1].split(" ")[0]
        pieces, usage = [], None
        with httpx.stream("POST", url + "/v1/completions", timeout=60,
                          json={"prompt": "ROMEO:", "max_tokens": 300, "stream": True, "temperature": 0,
                                "stream_options": {"include_usage": True}}) as r:
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if not pieces:
                    proc.send_signal(signal.SIGTERM)  # after the first chunk: the rest must still come
                if line == "data: [DONE]":
                    pieces.append(None)
                    break
                msg = json.loads(line[6:])
                pieces.append(msg)
                usage = msg.get("usage") or usage
        assert pieces[-1] is None and usage["completion_tokens"] == 300
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):  # and nothing listens any more
            httpx.get(url + "/health", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def test_cli_checks_options_before_loading(capsys, tmp_path):
    from lmlab.cli import main

    for argv, fragment in [(["--port", "70000"], "--port must be in [0, 65535]"),
                           (["--max-batch", "0"], "--max-batch must be in [1, 1024]"),
                           (["--dtype", "float8"], "--dtype 'float8' unknown")]:
        assert main(["serve", str(tmp_path / "no-such-run"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and fragment in err and "\n" not in err
    assert main(["serve", str(tmp_path / "no-such-run")]) == 2
    assert "does not exist" in capsys.readouterr().err
