"""The web surface: services wiring, API keys, JSON API, OpenAI-compatible API, Gradio UI."""
