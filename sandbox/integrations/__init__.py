"""Stockade inside other agent frameworks: one module per framework, each a thin adapter over
Stockade's public API (`Sandbox.run_code`, `Sandbox.session()`, `Result`), like the agent layer.

    stockade.integrations.langchain        a LangChain tool (content and artifact)
    stockade.integrations.deepagents       a Deep Agents sandbox backend over a workspace
    stockade.integrations.openai_agents    an OpenAI Agents SDK function tool
    stockade.integrations.openai_agents_sandbox  an OpenAI Agents SDK sandbox client (a
                                           SandboxAgent in a workspace)
    stockade.integrations.pydantic_ai      a Pydantic AI tool
    stockade.integrations.pydantic_ai_workspace  a Pydantic AI workspace backend
    stockade.integrations.smolagents       a PythonExecutor for smolagents' CodeAgent (its tools
                                           on the host)
    stockade.integrations.agent_framework_shell  Agent Framework's ShellExecutor (a workspace)
    stockade.integrations.agent_framework  Microsoft Agent Framework's execute_code tool and
                                           CodeAct provider
    stockade.integrations.dspy             a DSPy CodeInterpreter (its tools on the host: RLM)
    stockade.integrations.crewai           a CrewAI tool
    stockade.integrations.autogen          an AutoGen 0.7 CodeExecutor

Each imports its framework when it is imported itself (never `import stockade`), and says
which extra installs it when the framework is missing: `pip install 'stockade[langchain]'`.
"""

from __future__ import annotations


def missing(module: str, extra: str, error: ImportError) -> ImportError:
    """The ImportError the adapter `module` raises when its framework is not installed."""
    return ImportError(
        f"{module} needs {error.name or 'its framework'}: pip install 'stockade[{extra}]'",
        name=error.name,
    )
