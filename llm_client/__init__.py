"""The two LLM backends (local llama.cpp, hosted OpenAI-compatible) behind one small interface."""
