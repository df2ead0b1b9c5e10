"""Knowledge base: ingestion of standards and FAQ tables, hybrid Chinese retrieval (BM25 + dense)."""
