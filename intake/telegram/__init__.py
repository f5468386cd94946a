"""The Telegram channel: chat linking and requests (chat.py, no Bot API) and the bot (bot.py)."""
