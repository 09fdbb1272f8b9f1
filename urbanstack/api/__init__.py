"""Thin HTTP layer: parse the request, call a broker use case, render the answer."""
