"""replbot benchmarks: real servers on loopback, results as Markdown and JSON."""
