"""The Telegram channel: what an update means (chat.py with linking.py and staff_chat.py, no
Bot API) and the bot (bot.py)."""
