"""Thin cogs: parse the Discord input, call the engine through the bot, render, send."""
