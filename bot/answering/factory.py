"""Picks the answerer the settings ask for; the LLM answerer always keeps the extractive one as its fallback."""

from __future__ import annotations

from bot.answering import Answerer
from bot.answering.extractive import ExtractiveAnswerer
from bot.config import LLMProvider, Settings


def create_answerer(settings: Settings, extractive: ExtractiveAnswerer) -> Answerer:
    """The extractive answerer, or an LLM answerer that falls back to it."""
    if settings.llm is LLMProvider.NONE:
        return extractive
    # Imported here: LangChain's chat models take a noticeable part of start-up, and most installs never use them.
    from bot.answering.llm import LLMAnswerer, create_chat_model

    return LLMAnswerer(create_chat_model(settings), fallback=extractive, timeout=settings.llm_timeout)
