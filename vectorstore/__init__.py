"""Item texts in ChromaDB with an offline MiniLM embedding function."""
