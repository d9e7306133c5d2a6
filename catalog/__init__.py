"""The shared catalog model every layer stands on: indexed stores, the per-user scope, request constraints, text sanitising."""
