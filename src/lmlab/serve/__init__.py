"""`lmlab serve`: an OpenAI-compatible HTTP server (app, answer, protocol, chat) over a
continuous-batching engine (engine, slots). See docs/serving.md."""
