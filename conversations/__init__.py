"""A resident's conversation: the one owner of conversations, their messages, state and context."""
