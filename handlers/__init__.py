"""Telegram adapters: parse an update, call a service in bot/, render the reply."""
