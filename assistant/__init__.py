"""The resident assistant: routing, cited answers from the knowledge base, hand-offs."""
