"""The resident assistant: routing each turn to answer / clarify / chitchat / work_order / human /
emergency, with cited answers from the knowledge base."""
