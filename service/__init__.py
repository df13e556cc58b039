"""Scoring service (Litestar HTTP API), priority rules and the batch scorer."""
