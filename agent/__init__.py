"""The recommender: intent, planning, candidates, fusion, rerank, explanations, sessions, chat."""
