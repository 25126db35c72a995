"""Reusable test servers, all bound to 127.0.0.1.

- `scripted_openai`: `ScriptedOpenAIServer` / `ScriptedOllamaServer` (Chat Completions and Ollama
  /api/chat with scripted answers), in-process or ``python -m tests.servers.scripted_openai``.
- `mcp_weather`: a real MCP server (stdio or ``--transport http``).
- `fixtures`: pytest fixtures and process helpers that start them.
"""
