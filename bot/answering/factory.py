"""Picks the answerer the settings ask for; the LLM answerer always keeps the extractive one as its fallback."""

from __future__ import annotations

from bot.answering import Answerer
from bot.answering.extractive import ExtractiveAnswerer
from bot.config import LLMProvider, Settings
from bot.embeddings import Embedder


def create_answerer(settings: Settings, embedder: Embedder | None = None) -> Answerer:
    extractive = ExtractiveAnswerer(embedder=embedder)
    if settings.llm is LLMProvider.NONE:
        return extractive
    from bot.answering.llm import LLMAnswerer, create_chat_model

    return LLMAnswerer(create_chat_model(settings), fallback=extractive, timeout=settings.llm_timeout)
