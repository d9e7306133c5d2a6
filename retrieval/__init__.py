"""Numeric candidate sources: small classes over scipy sparse matrices with fit / score, no framework."""
