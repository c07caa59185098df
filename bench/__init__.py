"""Benchmarks: one command each, printing figures and the ratios the issues ask for."""
