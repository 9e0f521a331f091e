#!/usr/bin/env python3
"""Peer of the kubesafe-manifest-edit benchmark: the same edit with ruamel.yaml round-trip.

Usage: ruamel_edit.py MANIFEST ITERATIONS

Loads MANIFEST once (file I/O and interpreter start-up are not measured), then times
ITERATIONS in-process round trips of "set --profiling=false on the first container":
parse the text with ruamel.yaml's round-trip loader, replace or append the flag in
`command`, dump back to text. Prints one JSON line with the median and mean nanoseconds
per edit, so the Rust bench can compute the ratio in the same run.
"""
import io
import json
import statistics
import sys
import time

from ruamel.yaml import YAML


def set_profiling_false(yaml, text):
    data = yaml.load(text)
    command = data["spec"]["containers"][0]["command"]
    for i, item in enumerate(command):
        if isinstance(item, str) and item.startswith("--profiling="):
            command[i] = "--profiling=false"
            break
    else:
        command.append("--profiling=false")
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def main():
    path, iterations = sys.argv[1], int(sys.argv[2])
    with open(path, encoding="utf-8") as f:
        text = f.read()
    yaml = YAML()  # round-trip mode: the mode that keeps comments
    result = set_profiling_false(yaml, text)
    assert "--profiling=false" in result
    for _ in range(min(20, iterations)):  # warm-up
        set_profiling_false(yaml, text)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        set_profiling_false(yaml, text)
        samples.append(time.perf_counter_ns() - start)
    print(json.dumps({
        "peer": "ruamel.yaml " + __import__("ruamel.yaml").yaml.__version__,
        "iterations": iterations,
        "median_ns": statistics.median(samples),
        "mean_ns": statistics.fmean(samples),
    }))


if __name__ == "__main__":
    main()
