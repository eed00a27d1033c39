"""Real-time agent prompts: a websocket per agent and the agent web page that shows them."""

from qa.prompts.listener import PromptListener
from qa.prompts.server import DEFAULT_KINDS, PromptOptions, PromptServer

__all__ = ["DEFAULT_KINDS", "PromptListener", "PromptOptions", "PromptServer"]
