"""Chinese sentiment, relevance and risk grading (Ⅰ–Ⅳ) of posts about the company's communities."""
